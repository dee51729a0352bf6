"""Residual block used by the encoder, decoder and UNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.nn.normalization import group_norm


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-Conv ×2 with a skip connection; (B, C_in, H, W) → (B, C_out, H, W).

    With ``emb_channels`` the block is conditioned on an embedding (B, emb_channels):
    added to the features (``scale_shift=False``) or applied as FiLM after the second
    norm, ``h = norm(h) * (1 + scale) + shift`` (``scale_shift=True``, as in improved DDPM).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        emb_channels: int | None = None,
        dropout: float = 0.0,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.scale_shift = scale_shift
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = None
        if emb_channels is not None:
            self.emb_proj = nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1))
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb_proj is not None:
            if emb is None:
                raise ValueError("this ResnetBlock was built with emb_channels; pass emb")
            e = self.emb_proj(F.silu(emb))[:, :, None, None]
            if self.scale_shift:
                scale, shift = e.chunk(2, dim=1)
                h = self.norm2(h) * (1 + scale) + shift
            else:
                h = self.norm2(h + e)
        else:
            h = self.norm2(h)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h
