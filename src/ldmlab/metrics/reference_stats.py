"""Real reference images for FID/KID/PR, in torch-fidelity's input format, with a stable cache name.

torch-fidelity caches the features of an input under ``<input2_cache_name>-<extractor>-...`` in
``cache_root``; its key ignores the extractor's weights, so ``ReferenceSet.cache_name`` appends a
hash of the weights file. The reference set's name carries the sha256 of the exact uint8 pixels
handed to torch-fidelity (the content fingerprint of the reference data: computed from what was
read, so new pixels under the same file names, or a changed resize, give a new name). Reference
features are then extracted once per (dataset, split, resolution, channels, count, pixels,
extractor weights); torch-fidelity adds the feature layer to each file's name.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from ldmlab.utils.errors import FieldError
from ldmlab.utils.file_fingerprint import file_sha256
from ldmlab.utils.pretrained import cache_dir

SPLITS = ("train", "val", "test")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) float in [-1, 1] → uint8 in [0, 255] (rounded, as when saving a PNG)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class FidelityImages(Dataset):
    """torch-fidelity input: items uint8 (3, H, W); grayscale (N, 1, H, W) is repeated to RGB.
    ``on_item`` (optional) is called the first time each item is read (progress over metric
    batches; torch-fidelity also peeks at item 0 before its pass)."""

    def __init__(self, images_uint8: torch.Tensor, on_item: Callable[[], None] | None = None) -> None:
        self.images, self.on_item, self._seen = images_uint8, on_item, set()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.on_item is not None and index not in self._seen:
            self._seen.add(index)
            self.on_item()
        return self.images[index].expand(3, -1, -1)


def fidelity_cache_root() -> Path:
    """Where torch-fidelity keeps reference features and FID statistics: ``$LDMLAB_CACHE/fidelity``."""
    return cache_dir() / "fidelity"


@functools.cache
def _file_digest(path: Path, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    return file_sha256(path)[:16]


def file_digest(path: str | Path) -> str:
    """sha256 of a weights file (16 hex digits), memoised in this process per (path, inode, size,
    mtime, ctime): any write, even one that sets the mtime back, changes the ctime."""
    path = Path(path).resolve()
    stat = path.stat()
    return _file_digest(path, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@dataclass(frozen=True, eq=False)
class ReferenceSet:
    """Real images ``images`` uint8 (N, C, H, W) and ``name``, unique per content.

    ``name`` reads ``<dataset>-<split>-<H>px-<C>ch-n<N>-<content hash>``.
    """

    name: str
    images: torch.Tensor

    @classmethod
    def from_images(cls, dataset: str, split: str, images: torch.Tensor) -> ReferenceSet:
        """From float images (N, C, H, W) in [-1, 1]."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise FieldError(
                "metrics", "reference", f"images must be (N, 1|3, H, W), got {tuple(images.shape)}",
                "pass a batch of images in [-1, 1]",
            )
        pixels = to_uint8(images)
        content = hashlib.sha256(pixels.numpy().tobytes()).hexdigest()[:16]
        n, c, h, _ = pixels.shape
        return cls(f"{dataset}-{split}-{h}px-{c}ch-n{n}-{content}", pixels)

    @classmethod
    def from_datamodule(
        cls, datamodule: pl.LightningDataModule, split: str = "test", num_reference: int = 10000,
        dataset: str | None = None,
    ) -> ReferenceSet:
        """The first ``num_reference`` images of a datamodule split ("train" | "val" | "test").

        ``dataset`` names it in the cache key (default: the datamodule class name without
        "DataModule", lower-cased, e.g. ``fashionmnist``).
        """
        if split not in SPLITS:
            raise FieldError("metrics", "reference_split", f"unknown split {split!r}", f"use one of {SPLITS}")
        datamodule.setup("fit")
        items = getattr(datamodule, f"{split}_set")
        if not 0 < num_reference <= len(items):
            raise FieldError(
                "metrics", "num_reference", f"{num_reference} images asked, the {split} split has "
                f"{len(items)}", f"set {{key}} between 1 and {len(items)}",
            )
        images = torch.stack([items[i]["image"] for i in range(num_reference)])
        name = dataset or type(datamodule).__name__.removesuffix("DataModule").lower()
        return cls.from_images(name, split, images)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every reference image."""
        return tuple(self.images.shape[1:])

    def cache_name(self, extractor_tag: str, weights_path: str | Path) -> str:
        """torch-fidelity ``input2_cache_name``: this set + the extractor + its weights' hash."""
        return f"{self.name}-{extractor_tag}-{file_digest(weights_path)}"

    def as_fidelity_input(self) -> FidelityImages:
        return FidelityImages(self.images)
