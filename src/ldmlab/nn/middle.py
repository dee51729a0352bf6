"""The middle of the first-stage encoder and decoder: ResNet, optional self-attention, ResNet."""

from __future__ import annotations

from torch import nn

from ldmlab.nn.attention import SelfAttention2d
from ldmlab.nn.resnet import ResnetBlock


def middle_block(width: int, attention: bool, dropout: float) -> nn.Sequential:
    """(B, width, h, w) → (B, width, h, w); an ``nn.Identity`` stands where attention is off."""
    return nn.Sequential(
        ResnetBlock(width, dropout=dropout),
        SelfAttention2d(width) if attention else nn.Identity(),
        ResnetBlock(width, dropout=dropout),
    )
