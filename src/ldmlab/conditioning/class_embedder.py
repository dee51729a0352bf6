"""Class-label conditioning: a learned embedding table with an extra null row."""

from __future__ import annotations

import torch
from torch import nn

from ldmlab.conditioning.base import Embedder
from ldmlab.config.types import PositiveInt
from ldmlab.utils.errors import part_key


class ClassEmbedder(Embedder):
    """Labels (B,) int in [0, num_classes) → (B, 1, embed_dim) crossattn or (B, embed_dim) vector.

    Row ``num_classes`` of the table is the learned null (unconditional) embedding.
    """

    def __init__(
        self,
        num_classes: PositiveInt,
        embed_dim: PositiveInt,
        output_type: str = "crossattn",
        input_key: str = "label",
        p_uncond: float = 0.0,
    ) -> None:
        if output_type not in ("crossattn", "vector"):
            raise ValueError(
                f"ClassEmbedder output_type must be 'crossattn' or 'vector', got {output_type!r}"
            )
        super().__init__(input_key, output_type, p_uncond)
        if num_classes < 1:
            raise ValueError(f"{part_key('data', 'num_classes')} must be ≥ 1, got {num_classes}")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.table = nn.Embedding(num_classes + 1, embed_dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                f"class_label must be an integer tensor of shape (B,), got {labels.dtype} "
                f"{tuple(labels.shape)}"
            )
        # the range check reads values back, so it runs where that is free (CPU tensors); on an
        # accelerator it would be a host sync per step: there the labels are the data's, whose
        # class count the config ties to this table (data.num_classes)
        if labels.device.type == "cpu" and labels.numel() and (
                int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"class_label out of range [0, {self.num_classes}): got values in "
                f"[{int(labels.min())}, {int(labels.max())}]; check {part_key('data', 'num_classes')}"
            )
        return self._shape(self.table(labels.to(self.table.weight.device)))

    def null(self, batch_size: int) -> torch.Tensor:
        return self._shape(self.table.weight[self.num_classes].expand(batch_size, -1))

    def _shape(self, emb: torch.Tensor) -> torch.Tensor:
        return emb[:, None, :] if self.output_type == "crossattn" else emb
