"""DiT (Peebles & Xie 2023): a transformer on latent patches, conditioned by adaLN-Zero.

Patchify (p × p) → + 2-D positions → ``depth`` × DiTBlock → final adaLN layer → unpatchify.
The conditioning vector c (B, hidden_size) is the timestep embedding plus the vector condition:
a ``vector`` of width ``hidden_size`` is added as is (DiT's label embedding: give the conditioner
``conditioner=class_vector``, whose table has the CFG null as its extra row), any other width goes
through a Linear. With ``context_dim`` set, every block also cross-attends to
``cond["crossattn"]`` after its self-attention (PixArt-α's text conditioning; the cross-attention
output starts at zero). Every block, and the output, is zero at init (adaLN-Zero).

The timestep features are diffusers' (``freq_shift=1``), so the weights map one to one onto
``DiTTransformer2DModel`` (``ldmlab.interop.dit``). The adaLN modulation and the final layer run in
the weights' precision (float32 under bf16 autocast); attention is torch SDPA.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.backbones.patch_base import TIME_FREQUENCIES, PatchDenoiser
from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.nn.embeddings import TimestepEmbedder
from ldmlab.nn.transformer import CrossAttention
from ldmlab.nn.vit import Attention, Mlp


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, D) · (1 + scale) + shift, with shift and scale (B, 1, D)."""
    return x * (1 + scale) + shift


def exact_precision(device_type: str) -> AbstractContextManager:
    """A context in which autocast is off (ops run in their inputs' dtype)."""
    if device_type in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


class DiTBlock(nn.Module):
    """x (B, N, D) → x + g₁·Attn(mod(LN x)) [+ CrossAttn(x, context)] → + g₂·MLP(mod(LN x)).

    Shifts, scales and gates g come from ``modulation(c)`` (zero-initialised, so the block is the
    identity at init); LayerNorms have no affine parameters.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, context_dim: int | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.cross_attn = None
        if context_dim is not None:
            self.cross_attn = CrossAttention(dim, context_dim, num_heads, dim // num_heads)
            nn.init.zeros_(self.cross_attn.to_out[0].weight)
            nn.init.zeros_(self.cross_attn.to_out[0].bias)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        context: torch.Tensor | None,
        context_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (B, N, D), c (B, D), context (B, L, context_dim) with context_mask (B, L) or None."""
        with exact_precision(x.device.type):
            mod = self.modulation(F.silu(c.to(self.modulation.weight.dtype)))
        shift1, scale1, gate1, shift2, scale2, gate2 = mod[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))
        if self.cross_attn is not None:
            x = x + self.cross_attn(x, context, context_mask)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """(B, N, D) → LN, adaLN shift/scale from c → Linear → (B, N, p·p·out); zero at init."""

    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        for layer in (self.modulation, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        dtype = self.linear.weight.dtype
        with exact_precision(x.device.type):
            shift, scale = self.modulation(F.silu(c.to(dtype)))[:, None].chunk(2, dim=-1)
            return self.linear(modulate(self.norm(x.to(dtype)), shift, scale))


class DiT(PatchDenoiser):
    """Denoiser ``forward(x (B, in_channels, s, s), t (B,), cond) → (B, out_channels, s, s)``,
    s = ``input_size``; ``cond`` as in ``PatchDenoiser``. Sizes of the paper: S (384, 12, 6),
    B (768, 12, 12), L (1024, 24, 16), XL (1152, 28, 16) as (hidden_size, depth, num_heads)."""

    def __init__(
        self,
        in_channels: PositiveInt,
        out_channels: PositiveInt,
        input_size: PositiveInt,
        patch_size: PositiveInt = 2,
        hidden_size: PositiveInt = 1152,
        depth: PositiveInt = 28,
        num_heads: PositiveInt = 16,
        mlp_ratio: float = 4.0,
        context_dim: PositiveInt | None = None,
        vector_dim: PositiveInt | None = None,
        concat_channels: NonNegativeInt = 0,
        pos_embed: str = "sincos",
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, input_size, patch_size, hidden_size, depth, num_heads,
                         context_dim, vector_dim, concat_channels, pos_embed, gradient_checkpointing)
        self.mlp_ratio = mlp_ratio
        self.time_embed = TimestepEmbedder(TIME_FREQUENCIES, hidden_size, freq_shift=1)
        self.vector_embed = None
        if vector_dim is not None:
            same = vector_dim == hidden_size
            self.vector_embed = nn.Identity() if same else nn.Linear(vector_dim, hidden_size)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, context_dim) for _ in range(depth)
        )
        self.final = FinalLayer(hidden_size, patch_size, out_channels)
        self._init_weights()

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        cond, c = self._embed(x, t, cond)
        tokens = self._patch_tokens(x, cond)
        context, context_mask = cond.get("crossattn"), cond.get("crossattn_mask")
        for block in self.blocks:
            tokens = self._run(block, tokens, c, context, context_mask)
        return self._image(self.final(tokens, c))

    def _init_weights(self) -> None:
        """DiT's initialisation: Xavier-uniform Linears and patch projection with zero biases, time
        MLP N(0, 0.02²), then the zero-initialised adaLN / cross-attention outputs / final layer."""
        zeroed = {id(self.final.modulation), id(self.final.linear)}
        for block in self.blocks:
            zeroed.add(id(block.modulation))
            if block.cross_attn is not None:
                zeroed.add(id(block.cross_attn.to_out[0]))
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in zeroed:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
