"""PatchGAN discriminator (pix2pix) for the stage-1 adversarial loss."""

from __future__ import annotations

import torch
from torch import nn

from ldmlab.config.types import PositiveInt
from ldmlab.nn.normalization import group_norm

NORMS = ("batch", "group", "none")
KERNEL, PADDING, MAX_CHANNEL_MULT = 4, 1, 8


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return group_norm(channels)
    return nn.Identity()


class NLayerDiscriminator(nn.Module):
    """Patch discriminator; images (B, in_channels, H, W) → real/fake logits (B, 1, h', w').

    ``n_layers`` stride-2 4×4 convs (channels base·1, 2, 4, 8, 8, …) then two stride-1 4×4
    convs, LeakyReLU(0.2) between them and no norm on the first and last conv. Each side
    shrinks as s → ⌊s/2⌋ per stride-2 conv and s → s − 1 per stride-1 conv, so
    h' = ⌊H/2^n⌋ − 2 and the input must be at least 3·2^n pixels per side (24 for n = 3).
    Each logit sees a 9·2^n − 2 pixel receptive field (70×70 for n = 3; at 32×32 that covers
    the whole image, use n_layers=2 (34×34) or 1 (16×16) for more local patches).
    Init: conv weights N(0, 0.02), biases 0, norm weights N(1, 0.02).
    """

    def __init__(
        self, in_channels: PositiveInt, base_channels: PositiveInt = 64, n_layers: PositiveInt = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not valid; choose one of {NORMS}")
        if n_layers < 1:
            raise ValueError(f"n_layers={n_layers} must be >= 1")
        if in_channels < 1 or base_channels < 1:
            raise ValueError(
                f"in_channels={in_channels} and base_channels={base_channels} must be >= 1"
            )
        self.n_layers = n_layers
        use_bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, KERNEL, 2, PADDING),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base_channels
        for i in range(1, n_layers + 1):
            out_channels = base_channels * min(2**i, MAX_CHANNEL_MULT)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(channels, out_channels, KERNEL, stride, PADDING, bias=use_bias),
                _norm_layer(norm, out_channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, KERNEL, 1, PADDING))
        self.layers = nn.Sequential(*layers)
        self.apply(self._init_weights)

    @property
    def receptive_field(self) -> int:
        """Side in pixels of the input patch each output logit depends on: 9·2^n − 2."""
        return 9 * 2**self.n_layers - 2

    @property
    def min_input_size(self) -> int:
        """Smallest input side that gives at least one logit: 3·2^n."""
        return 3 * 2**self.n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"NLayerDiscriminator with n_layers={self.n_layers} needs (B, C, H, W) inputs "
                f"with H, W >= {self.min_input_size}, got {tuple(x.shape)}; lower n_layers"
            )
        return self.layers(x)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
