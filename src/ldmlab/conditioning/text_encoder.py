"""Text conditioning: a small transformer encoder trained jointly with the UNet (LDM's τθ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ldmlab.conditioning.base import Embedder
from ldmlab.conditioning.tokenizer import ByteTokenizer
from ldmlab.config.types import PositiveInt
from ldmlab.nn.transformer import BasicTransformerBlock


class TextEmbedder(Embedder):
    """Captions (list of B strings) → crossattn (B, max_length, embed_dim) and mask (B, L).

    Byte tokens + learned positions → ``depth`` pre-LN self-attention blocks (padding keys
    masked) → LayerNorm. The null is a learned (max_length, embed_dim) sequence whose
    positions are all kept (mask all True).
    """

    def __init__(
        self,
        embed_dim: PositiveInt,
        depth: PositiveInt,
        heads: PositiveInt,
        max_length: PositiveInt = 77,
        input_key: str = "caption",
        p_uncond: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_key, "crossattn", p_uncond)
        if embed_dim % heads:
            raise ValueError(
                f"TextEmbedder embed_dim={embed_dim} must be divisible by heads={heads}"
            )
        self.embed_dim = embed_dim
        self.tokenizer = ByteTokenizer(max_length)
        self.token_embedding = nn.Embedding(ByteTokenizer.vocab_size, embed_dim)
        self.position_embedding = nn.Parameter(0.02 * torch.randn(max_length, embed_dim))
        self.blocks = nn.ModuleList(
            BasicTransformerBlock(embed_dim, heads, embed_dim // heads, None, dropout)
            for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(embed_dim)
        self.null_embedding = nn.Parameter(torch.randn(max_length, embed_dim))

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode(texts)[0]

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer(texts)
        device = self.position_embedding.device
        ids, mask = ids.to(device), mask.to(device)
        h = self.token_embedding(ids) + self.position_embedding
        for block in self.blocks:
            h = block(h, x_mask=mask)
        return self.final_norm(h), mask

    def null(self, batch_size: int) -> torch.Tensor:
        return self.null_embedding.expand(batch_size, -1, -1)

    def null_mask(self, batch_size: int) -> torch.Tensor:
        length = self.null_embedding.shape[0]
        return torch.ones(batch_size, length, dtype=torch.bool, device=self.null_embedding.device)
