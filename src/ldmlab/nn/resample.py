"""Factor-2 down- and upsampling layers; (B, C, H, W) ↔ (B, C, H/2, W/2)."""

import torch
import torch.nn.functional as F
from torch import nn

DOWNSAMPLE_PADDINGS = ("symmetric", "asymmetric")


class Downsample(nn.Module):
    """Strided 3×3 conv halving H and W.

    ``padding="symmetric"``: one zero row/column on every side (conv padding 1). ``"asymmetric"``:
    zeros on the right and bottom only, then an unpadded conv (the original LDM / diffusers VAE
    encoder). Same output shape, different sampling grid: the two are not interchangeable.
    """

    def __init__(self, channels: int, padding: str = "symmetric") -> None:
        super().__init__()
        if padding not in DOWNSAMPLE_PADDINGS:
            raise ValueError(f"padding={padding!r}, expected one of {DOWNSAMPLE_PADDINGS}")
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=int(padding == "symmetric"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "asymmetric":
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2 upsampling followed by a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
