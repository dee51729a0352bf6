"""Diffusion timestep embeddings: sinusoidal features and the UNet's time MLP."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(
    t: torch.Tensor, dim: int, max_period: float = 10000.0, freq_shift: int = 0
) -> torch.Tensor:
    """Sinusoidal features of timesteps t (B,) (long or float) → (B, dim), float32.

    LDM convention: with half = dim // 2 and f_i = max_period^(-i / (half - freq_shift)), i < half,
    the output is [cos(t·f_0), …, cos(t·f_{half-1}), sin(t·f_0), …, sin(t·f_{half-1})],
    zero-padded by one column when ``dim`` is odd. ``freq_shift`` 0 is LDM's and DiT's spacing,
    1 that of diffusers' DiT (``downscale_freq_shift=1``).
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
        / (half - freq_shift)
    )
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """t (B,) → sinusoidal (B, frequency_dim) → Linear-SiLU-Linear → (B, embed_dim).

    ``embed_dim`` defaults to 4 × ``frequency_dim`` (the UNet passes model_channels);
    ``freq_shift`` as in ``timestep_embedding``.
    """

    def __init__(
        self,
        frequency_dim: int,
        embed_dim: int | None = None,
        max_period: float = 10000.0,
        freq_shift: int = 0,
    ) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.max_period, self.freq_shift = max_period, freq_shift
        self.embed_dim = embed_dim or 4 * frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, self.embed_dim),
            nn.SiLU(),
            nn.Linear(self.embed_dim, self.embed_dim),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = timestep_embedding(t, self.frequency_dim, self.max_period, self.freq_shift)
        return self.mlp(features.to(self.mlp[0].weight.dtype))
