"""A small CNN classifier for the training images: the domain network behind classifier metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ldmlab.utils.errors import ConfigError


def _conv_norm_act(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.SiLU(),
    )


class ClassifierNetwork(nn.Module):
    """Images (B, in_channels, resolution, resolution) in [-1, 1] → class logits (B, num_classes).

    Stages of two 3×3 conv + GroupNorm + SiLU blocks, 2× average pooling between stages, global
    average pooling, then a linear + SiLU projection to ``feature_dim`` (the penultimate features,
    used for classifier FID/KID) and a linear head. ``config`` holds the plain constructor values
    stored in checkpoints so ``load_classifier`` can rebuild the network.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        resolution: int = 32,
        widths: Sequence[int] = (32, 64, 128),
        feature_dim: int = 128,
        groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or any(w % groups for w in widths):
            raise ConfigError(
                "classifier.widths", f"{widths} must be non-empty and divisible by groups={groups}",
                "use multiples of classifier.groups, e.g. [32, 64, 128]",
            )
        if num_classes < 2:
            raise ConfigError("classifier.num_classes", f"needs at least 2, got {num_classes}", "e.g. 10")
        self.config = {
            "in_channels": int(in_channels), "num_classes": int(num_classes), "resolution": int(resolution),
            "widths": widths, "feature_dim": int(feature_dim), "groups": int(groups),
            "dropout": float(dropout),
        }
        self.in_channels, self.num_classes, self.resolution = in_channels, num_classes, resolution
        stages: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            if index:
                stages.append(nn.AvgPool2d(2))
            stages += [_conv_norm_act(channels, width, groups), _conv_norm_act(width, width, groups)]
            channels = width
        self.trunk = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.project = nn.Sequential(nn.Linear(channels, feature_dim), nn.SiLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    @property
    def feature_dim(self) -> int:
        return self.config["feature_dim"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → penultimate features (B, feature_dim)."""
        return self.project(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → logits (B, num_classes)."""
        return self.head(self.features(x))
