"""Convolutional decoder of the first stage: (B, z_channels, h, w) → (B, C, h·f, w·f)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.config.types import PositiveInt
from ldmlab.nn.middle import middle_block
from ldmlab.nn.normalization import group_norm
from ldmlab.nn.resample import Upsample
from ldmlab.nn.resnet import ResnetBlock


class Decoder(nn.Module):
    """Mirror of :class:`~ldmlab.nn.encoder.Encoder` with ``num_res_blocks + 1`` blocks per stage.

    ``last_layer`` (the output conv's weight) is what the adaptive GAN weight differentiates.
    """

    def __init__(
        self,
        out_channels: PositiveInt,
        ch: PositiveInt,
        ch_mult: list[int],
        num_res_blocks: PositiveInt,
        z_channels: PositiveInt,
        mid_attention: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        width = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = middle_block(width, mid_attention, dropout)
        stages: list[nn.Module] = []
        for level in reversed(range(len(ch_mult))):
            for _ in range(num_res_blocks + 1):
                stages.append(ResnetBlock(width, ch * ch_mult[level], dropout=dropout))
                width = ch * ch_mult[level]
            if level > 0:
                stages.append(Upsample(width))
        self.up = nn.Sequential(*stages)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))
