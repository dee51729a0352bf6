"""Training items when stage 2's latents are cached: what the step needs, no pixels.

Wraps the training set (``_Transformed`` in ``base.py``) and a ``LatentStore``
(``ldmlab.first_stage.latent_store``). An item ``(index, seed)`` is ``{"latent": (C, h, w) float32
unscaled E(x) of the view the random flip draws for ``seed``, "index": int, "label": int}`` plus
what the sample transforms that read only the label add (``reads_image = False``, e.g.
``"caption"``): the image is neither decoded nor transformed, so a DataLoader worker only copies
latent rows from the memory-mapped shards. A batch is fetched whole (``__getitems__``, which
PyTorch's DataLoader calls with the batch's items): one gather per shard for the latents, so the
per-sample work is only the flip's draw and the label lookup.
With ``keep_image`` (a conditioner reads the pixels, or a sample transform such as ``AddLowRes``
derives an input from them) the full item is built as before and ``"latent"`` added to it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset, default_collate


class LatentItems(Dataset):
    def __init__(self, items: Any, store: Any, keep_image: bool) -> None:
        self.items, self.store = items, store
        self.keep_image = keep_image or any(getattr(t, "reads_image", True) for t in items.transforms)

    @property
    def base(self) -> Subset:
        """The training subset (its ``indices`` define the training order's digest)."""
        return self.items.base

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        return self._fields(item) | {"latent": self.store.row(item[0], self._view(item))}

    def __getitems__(self, items: list[tuple[int, int]]) -> dict:
        """The collated batch of ``items`` (use ``collate`` as the loader's ``collate_fn``)."""
        if self.keep_image:
            return default_collate([self[item] for item in items])
        index = torch.tensor([i for i, _ in items])
        views = [self._view(item) for item in items] if self.store.views == 2 else None
        return default_collate([self._fields(item) for item in items]) | {
            "latent": self.store.rows(index, views)}

    def _view(self, item: tuple[int, int]) -> int:
        """The stored view the item's seed draws (1: mirrored)."""
        return int(self.items.flipped(item)) if self.store.views == 2 else 0

    def _fields(self, item: tuple[int, int]) -> dict:
        """The item without its latent: the full sample with ``keep_image``, else the label and
        what label-only transforms add (``"index"`` included)."""
        if self.keep_image:
            return self.items[item]
        return self.items.transformed({"label": label_of(self.items.base, item[0])}, item)

    @staticmethod
    def collate(batch: dict) -> dict:
        """``__getitems__`` already collated the batch."""
        return batch


def label_of(subset: Subset, index: int) -> int:
    """Item ``index`` of ``subset``'s label, without decoding its image where the dataset can
    tell (``label_of``); otherwise read from the item."""
    dataset, position = subset.dataset, subset.indices[index]
    read = getattr(dataset, "label_of", None)
    return int(read(position)) if read is not None else int(dataset[position]["label"])
