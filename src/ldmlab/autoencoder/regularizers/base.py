"""Common interface of the stage-1 latent regularisers (KL, VQ)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class RegularizerOutput:
    """``loss``: scalar, *unweighted* regularisation loss (the total loss applies its weight);
    ``log``: detached scalars for logging."""

    loss: torch.Tensor
    log: dict[str, torch.Tensor] = field(default_factory=dict)


class Regularizer(nn.Module, ABC):
    """Maps encoder moments (B, moments_factor·embed_dim, h, w) to a latent z (B, embed_dim, h, w).

    ``moments_factor`` is how many channels the encoder's ``quant_conv`` must output per latent
    channel. Train vs eval behaviour follows ``self.training``.
    """

    moments_factor: int

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"embed_dim={embed_dim} must be a positive number of latent channels")
        self.embed_dim = embed_dim

    @abstractmethod
    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, RegularizerOutput]:
        """(B, moments_factor·embed_dim, h, w) → (z (B, embed_dim, h, w), RegularizerOutput)."""

    def sample_prior(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor | None:
        """z ~ p(z) of ``shape`` (N, embed_dim, h, w), or None where the regulariser defines no
        prior to sample (VQ: its prior over codes is learned separately)."""
        return None

    def check_moments(self, h: torch.Tensor) -> None:
        """Raise a ValueError unless ``h`` is (B, moments_factor·embed_dim, h, w)."""
        expected = self.moments_factor * self.embed_dim
        if h.ndim != 4 or h.shape[1] != expected:
            raise ValueError(
                f"{type(self).__name__} expects moments of shape (B, {expected}, h, w) "
                f"(moments_factor={self.moments_factor} × embed_dim={self.embed_dim}), got "
                f"{tuple(h.shape)}; set the encoder's output channels to "
                f"moments_factor·embed_dim"
            )
