"""Cross-attention transformer blocks (LDM's conditioning mechanism), using torch SDPA.

Key masks are bool (B, L) with True = keep (the position may be attended to); every row
must keep at least one position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.nn.normalization import group_norm


class CrossAttention(nn.Module):
    """Multi-head attention: queries from x (B, N, query_dim), keys/values from the context.

    ``context`` (B, L, context_dim) gives cross-attention; None gives self-attention over
    x (then ``context_dim`` must be None). Output (B, N, query_dim).
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.is_cross = context_dim is not None
        kv_dim = context_dim if context_dim is not None else query_dim
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(kv_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(kv_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``mask``: bool (B, L) over the keys (the context, or x for self-attention)."""
        if self.is_cross and context is None:
            raise ValueError("this CrossAttention was built with context_dim; pass context")
        if not self.is_cross and context is not None:
            raise ValueError("this CrossAttention was built without context_dim; pass no context")
        if context is not None and context.shape[1] == 1 and not torch.is_grad_enabled():
            # One key (a class token): softmax over it is exactly 1, so every query reads the value;
            # q and k are skipped. Inference only: in training, q/k keep their (zero) gradients (DDP).
            return self.to_out(self.to_v(context)).expand(-1, x.shape[1], -1)
        source = x if context is None else context
        q, k, v = (  # (B, n, heads·d) → (B, heads, n, d) as views (einops' rearrange cost more per call)
            proj(inp).unflatten(-1, (self.heads, -1)).transpose(1, 2)
            for proj, inp in ((self.to_q, x), (self.to_k, source), (self.to_v, source))
        )
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(out.transpose(1, 2).flatten(2))


class GEGLUFeedForward(nn.Module):
    """Linear → GELU-gated linear unit → Linear; (B, N, dim) → (B, N, dim), hidden mult·dim."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = mult * dim
        self.proj_in = nn.Linear(dim, 2 * hidden)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(self.dropout(value * F.gelu(gate)))


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm block on tokens (B, N, dim): self-attn → [cross-attn] → GEGLU FF.

    Each sub-layer is residual. Cross-attention exists iff ``context_dim`` is given.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = CrossAttention(dim, None, heads, dim_head, dropout)
        self.cross_attn = None
        if context_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.cross_attn = CrossAttention(dim, context_dim, heads, dim_head, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim, dropout=dropout)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        x_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``context`` (B, L, context_dim) with ``context_mask`` (B, L); ``x_mask`` (B, N)
        masks keys of the self-attention (e.g. text padding)."""
        x = x + self.self_attn(self.norm1(x), mask=x_mask)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm2(x), context, context_mask)
        elif context is not None:
            raise ValueError(
                "this block has no cross-attention (context_dim=None); pass no context"
            )
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the H·W positions of a feature map; (B, C, H, W) → (B, C, H, W).

    GroupNorm → Linear proj_in → ``depth`` BasicTransformerBlocks on (B, HW, heads·dim_head)
    tokens → Linear proj_out → residual. proj_out is zero-initialised, so the module is the
    identity at initialisation.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        depth: int = 1,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        self.norm = group_norm(channels)
        self.proj_in = nn.Linear(channels, inner_dim)
        self.blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, heads, dim_head, context_dim, dropout)
            for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner_dim, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # (B, HW, C) tokens
        for block in self.blocks:
            tokens = block(tokens, context, context_mask)
        return x + self.proj_out(tokens).transpose(1, 2).reshape(x.shape)
