"""Image value conventions: models work in [-1, 1], files and metrics in [0, 1]."""

import torch


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] → the same in [0, 1], clamped, on the CPU."""
    return ((images.clamp(-1, 1) + 1) / 2).cpu()
