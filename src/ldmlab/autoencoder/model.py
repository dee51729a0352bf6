"""The first-stage model: encoder → quant conv → regulariser → post-quant conv → decoder."""

from __future__ import annotations

import torch
from torch import nn

from ldmlab.autoencoder.regularizers.base import Regularizer, RegularizerOutput
from ldmlab.config.types import PositiveInt
from ldmlab.nn.decoder import Decoder
from ldmlab.nn.encoder import Encoder


class Autoencoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] ↔ latents (B, embed_dim, H/f, W/f).

    ``encode`` returns the regularised latent (KL: a posterior sample in training, the mode in
    eval; VQ: the quantised code) and the regulariser's loss/logs; ``decode`` inverts it.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, regularizer: Regularizer, embed_dim: PositiveInt):
        super().__init__()
        self.encoder, self.decoder, self.regularizer = encoder, decoder, regularizer
        self.embed_dim = embed_dim
        z_channels = encoder.conv_out.out_channels
        self.quant_conv = nn.Conv2d(z_channels, regularizer.moments_factor * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, decoder.conv_in.in_channels, 1)
        self.downsample_factor = encoder.downsample_factor

    @property
    def in_channels(self) -> int:
        return self.encoder.in_channels

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.last_layer

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, RegularizerOutput]:
        return self.regularizer(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    @torch.no_grad()
    def sample(
        self, n: int, resolution: int, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """D(z), z ~ the regulariser's prior: (n, C, resolution, resolution) clamped to [-1, 1];
        None when the regulariser has no prior. ``generator`` lives on the weights' device."""
        side = resolution // self.downsample_factor
        device = self.post_quant_conv.weight.device
        z = self.regularizer.sample_prior((n, self.embed_dim, side, side), generator, device)
        return None if z is None else self.decode(z).clamp(-1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RegularizerOutput]:
        z, reg = self.encode(x)
        return self.decode(z), reg
