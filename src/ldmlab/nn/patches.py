"""Patch tokens of a latent image: patchify by a strided conv, 2-D sin-cos positions, unpatchify.

Token order is row-major over the (h/p) × (w/p) grid: token i·(w/p) + j is the patch at row i,
column j, as in ViT, DiT and diffusers' ``PatchEmbed``.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """(B, C, h, w) → (B, h/p · w/p, dim): a p × p conv with stride p, flattened row-major."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def unpatchify(tokens: torch.Tensor, patch_size: int, channels: int, h: int, w: int) -> torch.Tensor:
    """(B, h/p · w/p, p·p·C) → (B, C, h, w); each token's features are ordered (p_row, p_col, C)."""
    p = patch_size
    x = tokens.reshape(tokens.shape[0], h // p, w // p, p, p, channels)
    return torch.einsum("bhwpqc->bchpwq", x).reshape(tokens.shape[0], channels, h, w)


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """positions (N,) → (N, dim): [sin(pos·ω_k), cos(pos·ω_k)], ω_k = 10000^(-k / (dim/2)), k < dim/2."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """(grid_h · grid_w, dim) float32 fixed positions (MAE / DiT): the first dim/2 features encode
    the column, the last dim/2 the row; ``dim`` must be divisible by 4."""
    if dim % 4:
        raise ValueError(f"sin-cos positions need a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)
    return emb.float()
