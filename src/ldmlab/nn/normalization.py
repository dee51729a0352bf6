"""Normalisation layers shared by the autoencoder and the UNet."""

from torch import nn


def group_norm(channels: int, num_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with ``min(num_groups, channels)`` groups that divide ``channels``."""
    groups = min(num_groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
