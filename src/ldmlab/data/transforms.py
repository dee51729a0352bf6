"""Image transforms shared by the datamodules: uint8 arrays → float tensors in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ldmlab.utils.errors import FieldError


def to_model_range(image_uint8: torch.Tensor) -> torch.Tensor:
    """(C, H, W) uint8 in [0, 255] → float32 in [-1, 1]."""
    return image_uint8.float().div(127.5).sub(1.0)


def fit_resolution(image: torch.Tensor, resolution: int, mode: str) -> torch.Tensor:
    """Bring a (C, H, W) float image in [-1, 1] to (C, resolution, resolution).

    ``pad``: centre-pad with background (-1) when smaller, centre-crop when larger;
    ``resize``: bilinear resize of the shorter side then centre-crop.
    """
    _, h, w = image.shape
    if mode == "pad":
        pad_h, pad_w = max(resolution - h, 0), max(resolution - w, 0)
        image = F.pad(
            image, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=-1.0
        )
    elif mode == "resize":
        scale = resolution / min(h, w)
        size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    else:
        raise FieldError("data", "resize_mode", f"unknown mode {mode!r}", "use 'pad' or 'resize'")
    _, h, w = image.shape
    top, left = (h - resolution) // 2, (w - resolution) // 2
    return image[:, top : top + resolution, left : left + resolution]


def match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a grayscale (1, H, W) image to 3 channels, or average RGB to 1, as asked."""
    c = image.shape[0]
    if c == channels:
        return image
    if c == 1 and channels == 3:
        return image.expand(3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        return image.mean(0, keepdim=True)
    raise FieldError("data", "channels", f"cannot map {c} image channels to {channels}", "use 1 or 3")
