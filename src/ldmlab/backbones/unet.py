"""Time-conditional UNet (the stage-2 denoiser) with cross-attention, vector and concat inputs.

Layout as in the LDM UNet: input conv → per level ``num_res_blocks`` × (ResBlock [+ attention])
then Downsample → middle (ResBlock, attention, ResBlock) → per level, deepest first,
``num_res_blocks + 1`` × (ResBlock on [h, skip] [+ attention]) then Upsample → GroupNorm-SiLU-
zero-initialised conv. Attention sits at the downsampling factors in ``attention_resolutions``
(and always in the middle): a ``SpatialTransformer`` when ``context_dim`` is set, else
``SelfAttention2d``. ResBlocks are FiLM-conditioned on time embedding (+ projected vector).
``gradient_checkpointing`` recomputes each ResBlock and attention layer in the backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ldmlab.backbones.base import Denoiser, check_cond_entry, check_context_mask
from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.nn.attention import SelfAttention2d
from ldmlab.nn.embeddings import TimestepEmbedder
from ldmlab.nn.normalization import group_norm
from ldmlab.nn.resample import Downsample, Upsample
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.nn.transformer import SpatialTransformer


class UNetStage(nn.ModuleList):
    """Layers run in order; ResBlocks get the embedding, SpatialTransformers the context. With
    ``checkpointing`` (and grad enabled) each ResBlock and attention layer keeps only its inputs
    and is recomputed in the backward pass (same RNG state, so dropout draws the same mask)."""

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        context: torch.Tensor | None,
        context_mask: torch.Tensor | None,
        checkpointing: bool = False,
    ) -> torch.Tensor:
        recompute = checkpointing and torch.is_grad_enabled()
        for layer in self:
            if isinstance(layer, ResnetBlock):
                args = (x, emb)
            elif isinstance(layer, SpatialTransformer):
                args = (x, context, context_mask)
            elif isinstance(layer, SelfAttention2d):
                args = (x,)
            else:
                x = layer(x)  # Downsample / Upsample: cheap, never recomputed
                continue
            x = checkpoint(layer, *args, use_reentrant=False) if recompute else layer(*args)
        return x


class UNet(Denoiser):
    """Denoiser ``forward(x (B, in_channels, h, w), t (B,), cond) → (B, out_channels, h, w)``.

    ``cond`` may hold ``"crossattn"`` (B, L, context_dim) with optional ``"crossattn_mask"``
    (B, L) bool (True = keep), ``"vector"`` (B, vector_dim) and ``"concat"``
    (B, concat_channels, h, w); exactly the keys the net was built for must be present.
    h and w must be divisible by 2^(len(channel_mult) - 1).
    """

    X_LAYOUT, X_HINT = "h, w", "set backbone.in_channels to the latent channel count"

    def __init__(
        self,
        in_channels: PositiveInt,
        out_channels: PositiveInt,
        model_channels: PositiveInt,
        channel_mult: Sequence[int],
        num_res_blocks: PositiveInt,
        attention_resolutions: Sequence[int],
        num_heads: PositiveInt,
        transformer_depth: PositiveInt = 1,
        context_dim: PositiveInt | None = None,
        vector_dim: PositiveInt | None = None,
        concat_channels: NonNegativeInt = 0,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, context_dim, vector_dim, concat_channels)
        self.gradient_checkpointing = gradient_checkpointing
        channel_mult, attention_resolutions = list(channel_mult), list(attention_resolutions)
        self.channel_mult = channel_mult
        self._check_config(
            model_channels, num_res_blocks, attention_resolutions, num_heads, transformer_depth
        )
        emb_dim = 4 * model_channels

        def res(cin: int, cout: int) -> ResnetBlock:
            return ResnetBlock(cin, cout, emb_dim, dropout, use_scale_shift_norm)

        def attention(ch: int) -> nn.Module:
            if context_dim is None:
                return SelfAttention2d(ch, num_heads)
            return SpatialTransformer(
                ch, num_heads, ch // num_heads, transformer_depth, context_dim, dropout
            )

        self.time_embed = TimestepEmbedder(model_channels, emb_dim)
        self.vector_embed = nn.Linear(vector_dim, emb_dim) if vector_dim else None
        self.input_conv = nn.Conv2d(in_channels + concat_channels, model_channels, 3, padding=1)

        ch = model_channels
        skip_channels = [ch]
        self.down_stages = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if 2**level in attention_resolutions:
                    layers.append(attention(ch))
                self.down_stages.append(UNetStage(layers))
                skip_channels.append(ch)
            if level < len(channel_mult) - 1:
                self.down_stages.append(UNetStage([Downsample(ch)]))
                skip_channels.append(ch)

        self.middle = UNetStage([res(ch, ch), attention(ch), res(ch, ch)])

        self.up_stages = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * model_channels)]
                ch = mult * model_channels
                if 2**level in attention_resolutions:
                    layers.append(attention(ch))
                if level > 0 and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.up_stages.append(UNetStage(layers))

        out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), out_conv)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        cond, emb = self._embed(x, t, cond)
        if self.concat_channels:
            x = torch.cat([x, cond["concat"]], dim=1)
        context, context_mask = cond.get("crossattn"), cond.get("crossattn_mask")

        ckpt = self.gradient_checkpointing
        h = self.input_conv(x)
        skips = [h]
        for stage in self.down_stages:
            h = stage(h, emb, context, context_mask, ckpt)
            skips.append(h)
        h = self.middle(h, emb, context, context_mask, ckpt)
        for stage in self.up_stages:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context, context_mask, ckpt)
        return self.out(h)

    def _check_size(self, h: int, w: int) -> None:
        factor = 2 ** (len(self.channel_mult) - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"spatial size {h}x{w} is not divisible by {factor} = 2^(len(backbone.channel_mult)-1);"
                " use a latent size divisible by it or fewer backbone.channel_mult levels"
            )

    def _check_cond(self, cond: dict[str, torch.Tensor], b: int, h: int, w: int) -> None:
        expected = {
            "crossattn": ("backbone.context_dim", self.context_dim, (b, None, self.context_dim)),
            "vector": ("backbone.vector_dim", self.vector_dim, (b, self.vector_dim)),
            "concat": (
                "backbone.concat_channels",
                self.concat_channels,
                (b, self.concat_channels, h, w),
            ),
        }
        for key, (config_key, built, shape) in expected.items():
            check_cond_entry(cond, key, config_key, built, shape)
        if "crossattn_mask" in cond:
            check_context_mask(cond)

    def _check_config(
        self,
        model_channels: int,
        num_res_blocks: int,
        attention_resolutions: list[int],
        num_heads: int,
        transformer_depth: int,
    ) -> None:
        """Fail early with one message naming the offending ``backbone.*`` key."""
        positive = {
            "backbone.in_channels": self.in_channels,
            "backbone.out_channels": self.out_channels,
            "backbone.model_channels": model_channels,
            "backbone.num_res_blocks": num_res_blocks,
            "backbone.num_heads": num_heads,
            "backbone.transformer_depth": transformer_depth,
            "backbone.context_dim": 1 if self.context_dim is None else self.context_dim,
            "backbone.vector_dim": 1 if self.vector_dim is None else self.vector_dim,
        }
        for key, value in positive.items():
            if value < 1:
                raise ValueError(
                    f"{key} must be a positive integer (null where optional), got {value}"
                )
        if self.concat_channels < 0:
            raise ValueError(f"backbone.concat_channels must be ≥ 0, got {self.concat_channels}")
        mult = self.channel_mult
        if not mult or min(mult) < 1:
            raise ValueError(
                f"backbone.channel_mult must be a non-empty list of positive ints, got {mult}"
            )
        factors = [2**level for level in range(len(mult))]
        for factor in attention_resolutions:
            if factor not in factors:
                raise ValueError(
                    f"backbone.attention_resolutions entry {factor} is not a downsampling factor; with "
                    f"{len(mult)} backbone.channel_mult levels the factors are {factors}"
                )
        attention_levels = {len(mult) - 1} | {factors.index(f) for f in attention_resolutions}
        for ch in sorted(model_channels * mult[level] for level in attention_levels):
            if ch % num_heads:
                raise ValueError(
                    f"backbone.num_heads={num_heads} must divide the channel count {ch} of every "
                    "attention level (backbone.model_channels × backbone.channel_mult)"
                )

