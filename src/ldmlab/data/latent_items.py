"""Training items when stage 2's latents are cached: what the step needs, no pixels.

Wraps the training set (``_Transformed`` in ``base.py``) and a ``LatentStore``
(``ldmlab.first_stage.latent_store``). An item ``(index, seed)`` is ``{"latent": (C, h, w) float32
unscaled E(x) of the view the random flip draws for ``seed``, "index": int, "label": int}`` plus
what the sample transforms that read only the label add (``reads_image = False``, e.g.
``"caption"``): the image is neither decoded nor transformed, so a DataLoader worker only copies
latent rows from the memory-mapped shards.
With ``keep_image`` (a conditioner reads the pixels, or a sample transform such as ``AddLowRes``
derives an input from them) the full item is built as before and ``"latent"`` added to it.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset, Subset


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
        index = item[0]
        view = int(self.items.flipped(item)) if self.store.views == 2 else 0
        sample = self.items[item] if self.keep_image else self.items.transformed(
            {"label": label_of(self.items.base, index)}, item)
        return sample | {"latent": self.store.row(index, view), "index": index}


def label_of(subset: Subset, index: int) -> int:
    """Item ``index`` of ``subset``'s label, without decoding its image where the dataset can
    tell (``label_of``); otherwise read from the item."""
    dataset, position = subset.dataset, subset.indices[index]
    read = getattr(dataset, "label_of", None)
    return int(read(position)) if read is not None else int(dataset[position]["label"])
