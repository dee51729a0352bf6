"""First-stage encoder: (B, C, H, W) → (B, z_channels, H/f, W/f) with f = 2^(len(ch_mult)-1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.config.types import PositiveInt
from ldmlab.nn.middle import middle_block
from ldmlab.nn.normalization import group_norm
from ldmlab.nn.resample import DOWNSAMPLE_PADDINGS, Downsample
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.utils.errors import FieldError


class Encoder(nn.Module):
    """ResNet stages of width ``ch * ch_mult[i]``; a stride-2 downsample after every stage but the
    last; a middle block (ResNet, optional self-attention, ResNet); GroupNorm-SiLU-conv head.

    ``downsample_padding``: ``"asymmetric"`` pads right/bottom as the original LDM and diffusers
    VAEs (needed to export to diffusers); the default ``"symmetric"`` rebuilds checkpoints whose
    stored config predates the option unchanged.
    """

    def __init__(
        self,
        in_channels: PositiveInt,
        ch: PositiveInt,
        ch_mult: list[int],
        num_res_blocks: PositiveInt,
        z_channels: PositiveInt,
        mid_attention: bool = True,
        dropout: float = 0.0,
        downsample_padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if downsample_padding not in DOWNSAMPLE_PADDINGS:
            raise FieldError("autoencoder", "encoder.downsample_padding", f"is {downsample_padding!r}",
                             "{key}=asymmetric (or symmetric)")
        self.downsample_padding = downsample_padding
        self.in_channels = in_channels
        self.downsample_factor = 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        stages: list[nn.Module] = []
        width = ch
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                stages.append(ResnetBlock(width, ch * mult, dropout=dropout))
                width = ch * mult
            if level < len(ch_mult) - 1:
                stages.append(Downsample(width, downsample_padding))
        self.down = nn.Sequential(*stages)
        self.mid = middle_block(width, mid_attention, dropout)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))
