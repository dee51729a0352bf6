"""Real reference images for FID/KID/PR with a stable name, and the hash of a weights file.

The reference set's name carries the sha256 of its exact uint8 pixels (the content fingerprint of
the reference data: computed from what was read, so new pixels under the same file names, or a
changed resize, give a new name). The evaluator caches reference features under that name + the
feature network's identity (which holds ``file_digest`` of its weights) + the feature name, so
they are extracted once per (dataset, split, resolution, channels, count, pixels, network, weights).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch

from ldmlab.utils.errors import FieldError
from ldmlab.utils.file_fingerprint import file_sha256
from ldmlab.utils.pretrained import cache_dir

SPLITS = ("train", "val", "test")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) float in [-1, 1] → uint8 in [0, 255] (rounded, as when saving a PNG)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def fidelity_cache_root() -> Path:
    """Where reference features are cached: ``$LDMLAB_CACHE/fidelity``."""
    return cache_dir() / "fidelity"


@functools.cache
def _file_digest(path: Path, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    return file_sha256(path)[:16]


def file_digest(path: str | Path) -> str:
    """sha256 of a file (16 hex digits), memoised in this process per (path, inode, size,
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

