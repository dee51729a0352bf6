"""Shared LightningDataModule: deterministic splits, dict batches, loaders.

Every dataset yields dicts ``{"image": (C, H, W) float in [-1, 1], "label": int, ...}`` so
stage-2 conditioners can read any key (``label``, ``caption``, ``lowres``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ldmlab.utils.errors import ConfigError

SampleTransform = Callable[[dict, int], dict]


class ImageDataModule(pl.LightningDataModule):
    """Base class; subclasses implement ``build_datasets() -> (train_full, test)``.

    The validation split is the last ``val_size`` items of a seeded permutation of the
    training set, so it never changes between runs or ranks. ``train_subset`` /
    ``val_subset`` cap the split sizes (tests and quick runs).
    """

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int = 5000,
        split_seed: int = 0,
        train_subset: int | None = None,
        val_subset: int | None = None,
        sample_transforms: list[SampleTransform] | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if resolution <= 0:
            raise ConfigError("data.resolution", f"must be positive, got {resolution}", "e.g. 32")
        if channels not in (1, 3):
            raise ConfigError("data.channels", f"must be 1 or 3, got {channels}", "set 1 or 3")
        if batch_size <= 0:
            raise ConfigError("data.batch_size", f"must be positive, got {batch_size}", "e.g. 64")
        self.resolution = resolution
        self.channels = channels
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.split_seed = split_seed
        self.train_subset = train_subset
        self.val_subset = val_subset
        self.sample_transforms = list(sample_transforms or [])
        self.pin_memory = pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full, test = self.build_datasets()
        n = len(full)
        if n <= self.val_size:
            raise ConfigError(
                "data.val_size", f"{self.val_size} leaves no training data from {n} images",
                "lower data.val_size",
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        train_idx, val_idx = order[: n - self.val_size], order[n - self.val_size :]
        if self.train_subset:
            train_idx = train_idx[: self.train_subset]
        if self.val_subset:
            val_idx = val_idx[: self.val_subset]
        self.train_set = _Transformed(Subset(full, train_idx), self.sample_transforms, train=True)
        self.val_set = _Transformed(Subset(full, val_idx), self.sample_transforms, train=False)
        self.test_set = _Transformed(test, self.sample_transforms, train=False)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=shuffle and len(dataset) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class _Transformed(Dataset):
    """Applies per-sample transforms ``f(sample, index) -> sample`` (e.g. add a caption).

    Validation/test transforms are seeded by the index so their output is fixed.
    """

    def __init__(self, base: Dataset, transforms: list[SampleTransform], train: bool) -> None:
        self.base, self.transforms, self.train = base, transforms, train

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        sample = self.base[index]
        seed = random.getrandbits(32) if self.train else index
        for transform in self.transforms:
            sample = transform(sample, seed)
        return sample
