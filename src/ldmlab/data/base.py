"""Shared LightningDataModule: deterministic splits, dict batches, loaders.

Every dataset yields dicts ``{"image": (C, H, W) float in [-1, 1], "label": int, ...}`` so
stage-2 conditioners can read any key (``label``, ``caption``, ``lowres``).

Loading never draws from the global RNGs: the training order and the per-sample augmentation
seeds come from a ``ResumableSampler`` (a function of seed, epoch and position), and every
DataLoader has its own generator. A checkpoint stores how many samples of the current epoch
all ranks together consumed, so a resumed run continues with the next sample of the same order,
even with another batch size or number of ranks (``resume_changes``).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.data.fit_position import fit_position
from ldmlab.data.latent_items import LatentItems
from ldmlab.data.random_flip import flips
from ldmlab.data.resumable_sampler import ResumableSampler
from ldmlab.utils.errors import ConfigError, FieldError

SampleTransform = Callable[[dict, int], dict]


class ImageDataModule(pl.LightningDataModule):
    """Base class; subclasses implement ``build_datasets() -> (train_full, test)``.

    The validation split is the last ``val_size`` items of a seeded permutation of the
    training set, so it never changes between runs or ranks. ``train_subset`` /
    ``val_subset`` cap the split sizes (tests and quick runs). ``shuffle_seed`` seeds the
    training order (null: the run's ``seed`` as set by ``pl.seed_everything``). ``random_flip``
    mirrors each training image with probability 1/2, decided by its per-sample seed
    (``random_flip.py``); validation and test images are never flipped. ``pin_memory`` null: pin
    when the trainer runs on CUDA (so host→device copies are asynchronous).
    """

    def __init__(
        self,
        resolution: PositiveInt = 32,
        channels: int = 1,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        val_size: NonNegativeInt = 5000,
        split_seed: NonNegativeInt = 0,
        train_subset: PositiveInt | None = None,
        val_subset: PositiveInt | None = None,
        sample_transforms: list[SampleTransform] | None = None,
        pin_memory: bool | None = None,
        shuffle_seed: NonNegativeInt | None = None,
        random_flip: bool = False,
    ) -> None:
        super().__init__()
        if resolution <= 0:
            raise FieldError("data", "resolution", f"must be positive, got {resolution}", "e.g. {key}=32")
        if channels not in (1, 3):
            raise FieldError("data", "channels", f"must be 1 or 3, got {channels}", "{key}=1 or {key}=3")
        if batch_size <= 0:
            raise FieldError("data", "batch_size", f"must be positive, got {batch_size}", "e.g. {key}=64")
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
        self.shuffle_seed = shuffle_seed
        self.random_flip = random_flip
        self._resume_at: dict[str, int] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def content_fingerprint(self) -> str | None:
        """A digest of what, besides this module's settings, determines the images and labels it
        yields (file-backed data: ``files_fingerprint`` of the files it reads); caches derived
        from the data are keyed by it. None: this module cannot tell, so nothing derived from its
        data is cached. Subclasses that know their content override it."""
        return None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full, test = self.build_datasets()
        n = len(full)
        if n <= self.val_size:
            raise FieldError(
                "data", "val_size", f"{self.val_size} leaves no training data from {n} images",
                f"{{key}}={max(1, n // 20)}" if n > 1 else "use a dataset of at least 2 images",
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        train_idx, val_idx = order[: n - self.val_size], order[n - self.val_size :]
        if self.train_subset:
            train_idx = train_idx[: self.train_subset]
        if self.val_subset:
            val_idx = val_idx[: self.val_subset]
        self.train_set = _Transformed(Subset(full, train_idx), self.sample_transforms, self.random_flip)
        self.val_set = _Transformed(Subset(full, val_idx), self.sample_transforms)
        self.test_set = _Transformed(test, self.sample_transforms)

    def _seed(self) -> int:
        if self.shuffle_seed is not None:
            return int(self.shuffle_seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _loader(self, dataset: Dataset, sampler, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self._pinned(),
            drop_last=drop_last,
            collate_fn=getattr(dataset, "collate", None),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self._seed()),  # worker seeds; never the global RNG
        )

    def _pinned(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def serve_latents(self, store: Any, keep_image: bool) -> None:
        """From now on the training set yields cached latents (``LatentItems``: ``"latent"``, the
        labels and what label-only sample transforms add) instead of decoding images; with
        ``keep_image`` the images are still read (a conditioner or transform needs the pixels)."""
        items = self.train_set.items if isinstance(self.train_set, LatentItems) else self.train_set
        self.train_set = LatentItems(items, store, keep_image)

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        """In order; sharded over ranks (padded, as Lightning's own sampler) under DDP."""
        distributed = dist.is_available() and dist.is_initialized()
        sampler = DistributedSampler(dataset, shuffle=False) if distributed else None
        return self._loader(dataset, sampler, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by a ``ResumableSampler`` (sharded over ranks); full batches only."""
        # the epoch is set now, not only by Lightning's set_epoch: worker loaders draw indices
        # as soon as their iterator exists (on resume, before the loops are restored)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        sampler = ResumableSampler(len(self.train_set), self._seed(), shuffle=True, epoch=epoch)
        if self._resume_at:  # Lightning has not restored its epoch counter yet on the first call
            sampler.set_epoch(max(epoch, self._resume_at["epoch"]))
            sampler.resume(self._resume_at["epoch"], self._resume_at["samples"])
        return self._loader(self.train_set, sampler, drop_last=len(sampler) >= self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def _order(self) -> int:
        """A digest of what the training order is a function of besides the epoch: the shuffle
        seed and which items train (subset, split)."""
        indices = [self._seed(), *self.train_set.base.indices]
        return zlib.crc32(torch.tensor(indices, dtype=torch.int64).numpy().tobytes())

    def _check_same_order(self) -> None:
        """A checkpoint written mid-epoch continues only over the same order: its position means
        "these first samples of that permutation"."""
        stored = self._resume_at.get("order")
        if self._resume_at.get("samples") and stored is not None and stored != self._order():
            raise ConfigError(
                "resume_changes", f"the training order (shuffle seed, subset or split) differs from the "
                f"checkpoint's, which stopped {self._resume_at['samples']} samples into epoch "
                f"{self._resume_at['epoch']}: that epoch cannot continue at its next sample",
                "start fresh with ckpt_path=null; or keep their stored values (drop them from "
                "resume_changes) until a checkpoint written at an epoch end")

    def resumed_batches(self) -> int | None:
        """After a mid-epoch resume, the batches of this run's size (all ranks) that the samples
        consumed before it fill: where the epoch's batch count stands (None: nothing to resume)."""
        if not self._resume_at.get("samples") or self.trainer is None:
            return None
        if self.trainer.current_epoch != self._resume_at["epoch"]:
            return None
        return self._resume_at["samples"] // (self.batch_size * self.trainer.world_size)

    def state_dict(self) -> dict[str, Any]:
        """Where training is in the data: the epoch, the samples of it all ranks consumed
        (from Lightning's batch progress, counted from the resume point) and, mid-epoch, the
        digest of the order they were taken from (``order``)."""
        position = fit_position(self.trainer)
        if position is None:
            return {}
        if not position.batches:
            return {"epoch": position.epoch, "samples": 0}  # an epoch starts afresh
        per_batch = self.batch_size * self.trainer.world_size
        base = self.resumed_batches()
        start = self._resume_at["samples"] - base * per_batch if base is not None else 0
        samples = start + position.batches * per_batch
        return {"epoch": position.epoch, "samples": samples, "order": self._order()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called on resume (after ``setup``) before any train loader exists: the next one starts
        where training was. (Checkpoints from before samples were stored count ``batches``.)"""
        state = {k: int(v) for k, v in state_dict.items()}
        if "batches" in state:
            world = self.trainer.world_size if self.trainer is not None else 1
            state = {"epoch": state["epoch"], "samples": state["batches"] * self.batch_size * world}
        self._resume_at = state
        if self.train_set is not None:
            self._check_same_order()


class _Transformed(Dataset):
    """Applies the random flip (training items only) and per-sample transforms
    ``f(sample, seed) -> sample`` (e.g. add a caption).

    Items are looked up by ``index`` or by ``(index, seed)`` (what ``ResumableSampler`` yields);
    a bare index is its own seed, so validation/test output is fixed. Training items (the pairs)
    also carry ``"index"``: the key of stage 2's latent cache.
    """

    def __init__(self, base: Subset, transforms: list[SampleTransform], random_flip: bool = False) -> None:
        self.base, self.transforms, self.random_flip = base, transforms, random_flip

    def __len__(self) -> int:
        return len(self.base)

    def flipped(self, item: int | tuple[int, int]) -> bool:
        return self.random_flip and isinstance(item, tuple) and flips(item[1])

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        sample = self.base[item[0] if isinstance(item, tuple) else item]
        if self.flipped(item):
            sample = sample | {"image": sample["image"].flip(-1)}
        return self.transformed(sample, item)

    def transformed(self, sample: dict, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, item)
        for transform in self.transforms:
            sample = transform(sample, seed)
        return sample | {"index": index} if isinstance(item, tuple) else sample
