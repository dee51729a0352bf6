"""Spatial conditioning (e.g. a low-resolution image) concatenated to the UNet input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.conditioning.base import Embedder
from ldmlab.config.types import PositiveInt


class ConcatEmbedder(Embedder):
    """(B, in_channels, h0, w0) → bilinear resize to (size, size) → 3×3 conv → (B, out_channels,
    size, size). ``size`` is the latent's spatial size. The null is a learned (out_channels,)
    vector broadcast over space.
    """

    def __init__(
        self,
        in_channels: PositiveInt,
        out_channels: PositiveInt,
        size: PositiveInt,
        input_key: str = "lowres",
        p_uncond: float = 0.0,
    ) -> None:
        super().__init__(input_key, "concat", p_uncond)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size = size
        self.proj = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.null_embedding = nn.Parameter(torch.zeros(out_channels))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"ConcatEmbedder expects batch['{self.input_key}'] of shape (B, in_channels="
                f"{self.in_channels}, h, w), got {tuple(image.shape)}; fix in_channels"
            )
        image = image.to(self.proj.weight)
        resized = F.interpolate(
            image, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )
        return self.proj(resized)

    def null(self, batch_size: int) -> torch.Tensor:
        return self.null_embedding[None, :, None, None].expand(batch_size, -1, self.size, self.size)
