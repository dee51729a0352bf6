"""Time-conditional classifier on noisy latents z_t: the network behind classifier guidance.

The stage-2 UNet's down half (as guided-diffusion's encoder classifier): input conv → per level
``num_res_blocks`` × (ResBlock FiLM-conditioned on the timestep embedding [+ self-attention at
the downsampling factors in ``attention_resolutions``]) then Downsample (not after the last
level) → middle (ResBlock, attention, ResBlock) → GroupNorm-SiLU → attention pooling → linear.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ldmlab.config.types import PositiveInt
from ldmlab.nn.attention import SelfAttention2d
from ldmlab.nn.embeddings import TimestepEmbedder
from ldmlab.nn.normalization import group_norm
from ldmlab.nn.resample import Downsample
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.utils.errors import FieldError, part_key

PART = "noisy_classifier"  # errors name this part's fields


class AttentionPool(nn.Module):
    """(B, C, H, W) → (B, C): the mean of the H·W position tokens is the query of one multi-head
    attention over [mean, positions] (guided-diffusion's AttentionPool2d, without a positional
    embedding, so any spatial size works), followed by an output projection."""

    def __init__(self, channels: int, num_heads: PositiveInt) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = rearrange(x, "b c h w -> b (h w) c")
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        q, k, v = rearrange(self.qkv(tokens), "b l (three n d) -> three b n l d", three=3, n=self.num_heads)
        pooled = F.scaled_dot_product_attention(q[:, :, :1], k, v)
        return self.proj(rearrange(pooled, "b n 1 d -> b (n d)"))


class NoisyLatentClassifier(nn.Module):
    """``forward(z_t (B, in_channels, h, w) scaled latents, t (B,) long) → logits (B, num_classes)``.

    h and w must be divisible by 2^(len(channel_mult) − 1). ``config`` holds the plain constructor
    values, stored in checkpoints so ``load_noisy_classifier`` can rebuild the network.
    """

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: PositiveInt,
        model_channels: PositiveInt = 32,
        channel_mult: Sequence[int] = (1, 2),
        num_res_blocks: PositiveInt = 1,
        attention_resolutions: Sequence[int] = (2,),
        num_heads: PositiveInt = 4,
        dropout: float = 0.0,
        pool_heads: PositiveInt = 4,
    ) -> None:
        super().__init__()
        self.config = {
            "in_channels": int(in_channels), "num_classes": int(num_classes),
            "model_channels": int(model_channels), "channel_mult": [int(m) for m in channel_mult],
            "num_res_blocks": int(num_res_blocks),
            "attention_resolutions": [int(r) for r in attention_resolutions], "num_heads": int(num_heads),
            "dropout": float(dropout), "pool_heads": int(pool_heads),
        }
        _check_config(self.config)
        self.in_channels, self.num_classes = self.config["in_channels"], self.config["num_classes"]
        self.downsample = 2 ** (len(channel_mult) - 1)
        emb_dim = 4 * model_channels

        def res(cin: int, cout: int) -> ResnetBlock:
            return ResnetBlock(cin, cout, emb_dim, dropout, scale_shift=True)

        self.time_embed = TimestepEmbedder(model_channels, emb_dim)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, model_channels, 3, padding=1)]
        ch = model_channels
        for level, mult in enumerate(self.config["channel_mult"]):
            for _ in range(num_res_blocks):
                layers.append(res(ch, mult * model_channels))
                ch = mult * model_channels
                if 2**level in self.config["attention_resolutions"]:
                    layers.append(SelfAttention2d(ch, num_heads))
            if level < len(channel_mult) - 1:
                layers.append(Downsample(ch))
        layers += [res(ch, ch), SelfAttention2d(ch, num_heads), res(ch, ch), group_norm(ch), nn.SiLU()]
        self.layers = nn.ModuleList(layers)
        self.pool = AttentionPool(ch, pool_heads)
        self.head = nn.Linear(ch, num_classes)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w), (B,) → logits (B, num_classes)."""
        self._check_inputs(z_t, t)
        emb = self.time_embed(t)
        h = z_t
        for layer in self.layers:
            h = layer(h, emb) if isinstance(layer, ResnetBlock) else layer(h)
        return self.head(self.pool(h))

    def _check_inputs(self, z_t: torch.Tensor, t: torch.Tensor) -> None:
        if z_t.ndim != 4 or z_t.shape[1] != self.in_channels:
            raise ValueError(f"z_t must be (B, {part_key(PART, 'in_channels')}={self.in_channels}, h, w), "
                             f"got {tuple(z_t.shape)}")
        if z_t.shape[2] % self.downsample or z_t.shape[3] % self.downsample:
            raise ValueError(f"latent size {tuple(z_t.shape[2:])} is not divisible by {self.downsample} "
                             f"= 2^(len({part_key(PART, 'channel_mult')}) - 1)")
        if t.shape != z_t.shape[:1]:
            raise ValueError(f"t must have shape (B,)=({z_t.shape[0]},), got {tuple(t.shape)}")


def _check_config(config: dict) -> None:
    """Raise ``FieldError`` naming the first field of the noisy classifier that cannot build a network."""
    minimum = {"in_channels": 1, "num_classes": 2, "model_channels": 1, "num_res_blocks": 1,
               "num_heads": 1, "pool_heads": 1}
    for name, low in minimum.items():
        if config[name] < low:
            raise FieldError(PART, name, f"must be an integer >= {low}, got {config[name]}",
                             f"set {{key}} to at least {low}")
    mult = config["channel_mult"]
    if not mult or min(mult) < 1:
        raise FieldError(PART, "channel_mult", f"must be a non-empty list of positive ints, got {mult}",
                         "e.g. {key}=[1,2]")
    factors = [2**level for level in range(len(mult))]
    unknown = [f for f in config["attention_resolutions"] if f not in factors]
    if unknown:
        raise FieldError(PART, "attention_resolutions", f"{unknown} are not downsampling factors "
                         f"(with {len(mult)} levels they are {factors})",
                         f"pick from {factors}, e.g. {{key}}=[{factors[-1]}]")
    if not 0.0 <= config["dropout"] < 1.0:
        raise FieldError(PART, "dropout", f"must lie in [0, 1), got {config['dropout']}", "e.g. {key}=0.1")
    width = config["model_channels"]
    levels = {len(mult) - 1} | {factors.index(f) for f in config["attention_resolutions"]}
    for ch in sorted({width * mult[level] for level in levels}):
        if ch % config["num_heads"]:
            raise FieldError(PART, "num_heads", f"{config['num_heads']} does not divide the channel "
                             f"count {ch} of an attention level ({part_key(PART, 'model_channels')} × "
                             "channel_mult)",
                             f"use a divisor of {ch}")
    if (width * mult[-1]) % config["pool_heads"]:
        raise FieldError(PART, "pool_heads", f"{config['pool_heads']} does not divide the pooled channel "
                         f"count {width * mult[-1]}", f"use a divisor of {width * mult[-1]}")
