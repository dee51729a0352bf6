"""A small CNN classifier for the training images: the domain network behind classifier metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ldmlab.config.types import PositiveInt
from ldmlab.utils.errors import FieldError, part_key


def _conv_norm_act(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.SiLU(),
    )


class ClassifierNetwork(nn.Module):
    """Images (B, in_channels, resolution, resolution) in [-1, 1] → class logits (B, num_classes).

    Stages of two 3×3 conv + GroupNorm + SiLU blocks with 2× max pooling between them, then global
    max pooling (after GroupNorm it trains several times faster than global average pooling in
    short runs): the penultimate features (B, widths[-1]) used for classifier FID/KID. A linear
    head (after optional dropout) gives the logits. ``resolution`` records the training image size
    (checked against data and evaluated images; the layers themselves take any size). ``config``
    holds the plain constructor values, stored in checkpoints so ``load_classifier`` can rebuild it.
    """

    def __init__(
        self,
        in_channels: PositiveInt = 1,
        num_classes: PositiveInt = 10,
        resolution: PositiveInt = 32,
        widths: Sequence[int] = (16, 32, 64),
        groups: PositiveInt = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or any(w % groups for w in widths):
            raise FieldError(
                "classifier", "widths", f"{widths} must be non-empty and divisible by groups={groups}",
                f"use multiples of {part_key('classifier', 'groups')}, e.g. [32, 64, 128]",
            )
        if num_classes < 2:
            raise FieldError("classifier", "num_classes", f"needs at least 2, got {num_classes}", "e.g. 10")
        self.config = {
            "in_channels": int(in_channels), "num_classes": int(num_classes), "resolution": int(resolution),
            "widths": widths, "groups": int(groups), "dropout": float(dropout),
        }
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        self.resolution = int(resolution)
        stages: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            if index:
                stages.append(nn.MaxPool2d(2))
            stages += [_conv_norm_act(channels, width, groups), _conv_norm_act(width, width, groups)]
            channels = width
        self.trunk = nn.Sequential(*stages, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self.feature_dim = channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → penultimate features (B, feature_dim = widths[-1])."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → logits (B, num_classes)."""
        return self.head(self.features(x))
