"""Spatial self-attention over feature maps, using torch SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.nn.normalization import group_norm


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H·W positions; (B, C, H, W) → (B, C, H, W), residual."""

    def __init__(self, channels: int, num_heads: int = 1) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels={channels} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # (B, 3·heads·d, H, W) → 3 × (B, heads, HW, d) as views (einops' rearrange cost more per call)
        qkv = self.qkv(self.norm(x)).view(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(3, 4).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(2, 3).reshape(b, c, h, w))
