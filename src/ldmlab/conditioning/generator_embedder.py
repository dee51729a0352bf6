"""DiffuseVAE's conditioner (Pandey et al. 2022): another generator's image x̂, concatenated to x_t."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.autoencoder.prior import VAEPrior
from ldmlab.conditioning.base import Embedder
from ldmlab.config.types import PositiveInt


class GeneratorSampleEmbedder(Embedder):
    """x̂ (B, C, H, W) in [-1, 1] → resized to (B, C, size, size), concatenated to the UNet input as
    it is (DiffuseVAE feeds x̂ itself, no learned map). ``size`` is the diffusion's spatial size.

    Inputs: ``batch["x_hat"]`` when given (sampling: the VAE's prior samples, see ``draw``), else
    the VAE's reconstruction D(E(x)) of ``batch[source_key]`` (DiffuseVAE's training and
    validation pairs). The null (CFG-style dropout, ``p_uncond``) is a learned (C,) vector
    broadcast over space.

    centre_forward_process: also centre the forward process on x̂ (DiffuseVAE's formulation 2,
    ``NoiseSchedule.q_sample``'s ``centre``); x̂ must then live in the diffusion's space
    (pixels: ``first_stage=identity``).
    """

    def __init__(self, prior: VAEPrior, size: PositiveInt, input_key: str = "x_hat",
                 source_key: str = "image", p_uncond: float = 0.0,
                 centre_forward_process: bool = False) -> None:
        super().__init__(input_key, "concat", p_uncond)
        self.prior, self.size, self.source_key = prior, size, source_key
        self.centre_forward_process = centre_forward_process
        self.channels = prior.autoencoder.in_channels
        self.null_embedding = nn.Parameter(torch.zeros(self.channels))

    def reads(self) -> set[str]:
        return {self.input_key, self.source_key}

    def inputs(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        if self.input_key in batch:
            return batch[self.input_key]
        if self.source_key in batch:
            return self.prior.reconstruct(batch[self.source_key])
        return None

    def draw(self, n: int, seed: int = 0) -> torch.Tensor:
        """n prior samples of the VAE, (n, C, H, W) on the CPU: the x̂ that generation refines."""
        generator = torch.Generator(device=self.null_embedding.device).manual_seed(seed)
        return self.prior.sample(n, generator).cpu()

    def forward(self, x_hat: torch.Tensor) -> torch.Tensor:
        if x_hat.ndim != 4 or x_hat.shape[1] != self.channels:
            raise ValueError(f"GeneratorSampleEmbedder expects batch['{self.input_key}'] of shape (B, "
                             f"{self.channels}, H, W), got {tuple(x_hat.shape)}")
        x_hat = x_hat.to(self.null_embedding)
        if x_hat.shape[-1] != self.size or x_hat.shape[-2] != self.size:
            x_hat = F.interpolate(x_hat, size=(self.size, self.size), mode="bilinear", antialias=True)
        return x_hat

    def null(self, batch_size: int) -> torch.Tensor:
        return self.null_embedding[None, :, None, None].expand(batch_size, -1, self.size, self.size)
