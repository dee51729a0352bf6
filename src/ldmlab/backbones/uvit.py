"""U-ViT (Bao et al. 2023): every input is a token, and long skips join shallow and deep blocks.

Tokens: [time, vector?, context₁…context_L?, patches]; each extra token gets a learned type
embedding, the patches their positions. ``depth // 2`` in-blocks, one mid-block, ``depth // 2``
out-blocks; out-block k first maps [x, skip from in-block depth//2 − k] (2D) → D by a Linear.
Pre-LayerNorm blocks (self-attention, MLP); then LayerNorm → Linear to patches → unpatchify →
a 3 × 3 conv. The ``crossattn_mask`` masks its context tokens as keys.
"""

from __future__ import annotations

import torch
from torch import nn

from ldmlab.backbones.patch_base import TIME_FREQUENCIES, PatchDenoiser
from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.nn.embeddings import TimestepEmbedder
from ldmlab.nn.vit import Attention, Mlp
from ldmlab.utils.errors import FieldError


class UViTBlock(nn.Module):
    """x (B, N, D) [, skip (B, N, D)] → [Linear(cat(x, skip))] → + Attn(LN x) → + MLP(LN x)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, skip: bool) -> None:
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``mask``: bool (B, N) over the keys, or None."""
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class UViT(PatchDenoiser):
    """Denoiser ``forward(x (B, in_channels, s, s), t (B,), cond) → (B, out_channels, s, s)``,
    s = ``input_size``; ``cond`` as in ``PatchDenoiser``. ``depth`` counts every block (odd:
    in + mid + out; U-ViT-S/2 is (512, 13, 8), U-ViT-M/2 (768, 17, 12))."""

    def __init__(
        self,
        in_channels: PositiveInt,
        out_channels: PositiveInt,
        input_size: PositiveInt,
        patch_size: PositiveInt = 2,
        hidden_size: PositiveInt = 512,
        depth: PositiveInt = 13,
        num_heads: PositiveInt = 8,
        mlp_ratio: float = 4.0,
        context_dim: PositiveInt | None = None,
        vector_dim: PositiveInt | None = None,
        concat_channels: NonNegativeInt = 0,
        pos_embed: str = "learned",
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, input_size, patch_size, hidden_size, depth, num_heads,
                         context_dim, vector_dim, concat_channels, pos_embed, gradient_checkpointing)
        self.time_embed = TimestepEmbedder(TIME_FREQUENCIES, hidden_size)
        self.vector_embed = None  # the vector is a token of its own, not added to the time embedding
        self.vector_token = None if vector_dim is None else (
            nn.Identity() if vector_dim == hidden_size else nn.Linear(vector_dim, hidden_size))
        self.context_tokens = None if context_dim is None else nn.Linear(context_dim, hidden_size)
        extras = 1 + (vector_dim is not None) + (context_dim is not None)
        self.type_embed = nn.Parameter(torch.randn(extras, hidden_size) * 0.02)
        half = depth // 2
        def block(skip: bool) -> UViTBlock:
            return UViTBlock(hidden_size, num_heads, mlp_ratio, skip)

        self.in_blocks = nn.ModuleList(block(False) for _ in range(half))
        self.mid_block = block(False)
        self.out_blocks = nn.ModuleList(block(True) for _ in range(half))
        self.norm = nn.LayerNorm(hidden_size)
        self.to_patches = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.out_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        cond, time = self._embed(x, t, cond)
        extras = [time[:, None]]
        if self.vector_token is not None:
            extras.append(self.vector_token(cond["vector"].to(time.dtype))[:, None])
        if self.context_tokens is not None:
            extras.append(self.context_tokens(cond["crossattn"].to(time.dtype)))
        typed = [tokens + self.type_embed[i] for i, tokens in enumerate(extras)]
        num_extra = sum(tokens.shape[1] for tokens in typed)
        h = torch.cat([*typed, self._patch_tokens(x, cond)], dim=1)
        mask = self._key_mask(cond, h, num_extra)
        skips = []
        for block in self.in_blocks:
            h = self._run(block, h, mask)
            skips.append(h)
        h = self._run(self.mid_block, h, mask)
        for block in self.out_blocks:
            h = self._run(block, h, mask, skips.pop())
        patches = self.to_patches(self.norm(h))[:, num_extra:]
        return self.out_conv(self._image(patches))

    def _key_mask(
        self, cond: dict[str, torch.Tensor], h: torch.Tensor, num_extra: int
    ) -> torch.Tensor | None:
        """(B, N) key mask of the token sequence: the context tokens' mask, every other token kept."""
        if "crossattn_mask" not in cond:
            return None
        context_mask = cond["crossattn_mask"]
        before = num_extra - context_mask.shape[1]
        keep = torch.ones(h.shape[0], h.shape[1], dtype=torch.bool, device=h.device)
        return torch.cat([keep[:, :before], context_mask.to(h.device), keep[:, num_extra:]], dim=1)

    def _check_config(self, pos_embed: str) -> None:
        super()._check_config(pos_embed)
        if self.depth % 2 == 0:
            raise FieldError("backbone", "depth", f"is {self.depth}; U-ViT needs an odd depth (in-blocks, "
                             "a mid-block, as many out-blocks)", f"{{key}}={self.depth + 1}")
