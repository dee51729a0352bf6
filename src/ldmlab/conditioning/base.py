"""Base class of the conditioning embedders that the ``Conditioner`` combines."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ldmlab.utils.errors import FieldError

OUTPUT_TYPES = ("crossattn", "vector", "concat")


class Embedder(nn.Module, ABC):
    """Encodes one batch entry into a UNet conditioning input.

    ``input_key``: the batch entry it reads (e.g. ``"label"``, ``"caption"``, ``"lowres"``).
    ``output_type``: ``"crossattn"`` (B, L, D), ``"vector"`` (B, D) or ``"concat"`` (B, C, h, w).
    ``p_uncond``: probability that the ``Conditioner`` replaces a sample's embedding by the
    learned null during training (classifier-free guidance dropout).

    Subclasses implement ``forward(inputs)`` and ``null(batch_size)`` (the learned
    unconditional embedding, same shape as ``forward``'s output). Crossattn embedders with
    padding override ``encode`` and ``null_mask`` to also return a (B, L) bool key mask.
    """

    def __init__(self, input_key: str, output_type: str, p_uncond: float = 0.0) -> None:
        super().__init__()
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not 0.0 <= p_uncond <= 1.0:
            raise FieldError("conditioner", "p_uncond", f"must lie in [0, 1], got {p_uncond}",
                             "e.g. {key}=0.1")
        self.input_key = input_key
        self.output_type = output_type
        self.p_uncond = float(p_uncond)

    @abstractmethod
    def forward(self, inputs: Any) -> torch.Tensor:
        """Embedding of a batch of inputs."""

    @abstractmethod
    def null(self, batch_size: int) -> torch.Tensor:
        """The learned unconditional embedding, repeated ``batch_size`` times."""

    def inputs(self, batch: Mapping[str, Any]) -> Any | None:
        """What ``forward`` embeds from ``batch``: ``batch[input_key]``; None when absent (the
        conditioner then uses the null at sampling and refuses the batch in training)."""
        return batch.get(self.input_key)

    def reads(self) -> set[str]:
        """The batch keys ``inputs`` may read."""
        return {self.input_key}

    def encode(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embedding and key mask (None: every position is kept)."""
        return self(inputs), None

    def null_mask(self, batch_size: int) -> torch.Tensor | None:
        """Key mask of ``null(batch_size)`` (None: every position is kept)."""
        return None
