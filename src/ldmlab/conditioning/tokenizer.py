"""Byte-level UTF-8 tokenizer shipped with the project (no vocabulary download)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3


class ByteTokenizer:
    """Text → ids: BOS, the UTF-8 bytes (id = byte + 3), EOS, then PAD up to ``max_length``.

    Texts longer than ``max_length - 2`` bytes are truncated at a character boundary
    (before EOS, which is always present). ``vocab_size`` = 256 bytes + 3 specials.
    """

    vocab_size = 256 + BYTE_OFFSET

    def __init__(self, max_length: int = 77) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be ≥ 2 (room for BOS and EOS), got {max_length}")
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ids (B, max_length) long and mask (B, max_length) bool, True = real token."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError("texts must be a list of strings (a batch), e.g. ['a photo of a bag']")
        ids = torch.full((len(texts), self.max_length), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [BOS_ID, *(b + BYTE_OFFSET for b in self._truncated_bytes(text)), EOS_ID]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids, ids != PAD_ID

    def decode(self, ids: torch.Tensor) -> list[str]:
        """ids (B, L) → texts, dropping special tokens."""
        return [
            bytes(i - BYTE_OFFSET for i in row.tolist() if i >= BYTE_OFFSET).decode("utf-8")
            for row in ids
        ]

    def _truncated_bytes(self, text: str) -> bytes:
        data = text.encode("utf-8")[: self.max_length - 2]
        return data.decode("utf-8", errors="ignore").encode("utf-8")
