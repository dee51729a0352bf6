"""Shards streamed from a local disk, shared storage or object storage (``data=streaming``).

``root`` is what ``make shards`` wrote (a folder, or a URL such as ``s3://bucket/shards``, whose
chunks litdata downloads into ``cache_dir`` as they are needed; with ``download=false``, as in a
config read from a checkpoint, a URL is refused): ``train/`` and ``val/``, the
validation images held out when the folder was converted. Batches are
``{"image": (C, R, R) float in [-1, 1], "label": int}``, as every ldmlab data module yields.

Order. litdata shuffles the chunks and the items within each (seed: ``shuffle_seed``, else the
run's) and deals them to ranks × workers in whole batches: every training batch is full and every
rank has as many. The order is thus a function of (seed, epoch, ranks, workers, batch size); the
random flip of an item is one of (seed, epoch, its index) (``ShardImages``).

Resume. The module's ``state_dict`` (in every checkpoint) holds the epoch, the samples all ranks
consumed (from Lightning's processed batches) and what the order is a function of. A run resumed
mid-epoch rebuilds litdata's loader state from it and continues at the next batch of the same
order, exactly; with other ranks, workers, batch size, seed, subset or shards it refuses (one line)
where litdata would switch to an "elastic" order. A checkpoint written at an epoch's end resumes
under any of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.data.fit_position import fit_position
from ldmlab.data.shard_format import StreamingDataLoader
from ldmlab.data.shard_images import ShardImages
from ldmlab.utils.errors import FieldError, part_key

ORDER_KEYS = ("root", "train_subset", "seed", "world_size", "num_workers", "batch_size")  # the order's inputs


class StreamingDataModule(pl.LightningDataModule):
    """Training and validation batches from the shards under ``root`` (module docstring);
    ``random_flip`` mirrors training images left-right at random (ADM's ``random_flip``);
    ``train_subset`` / ``val_subset`` keep the first images of a split (tests and quick runs: the
    images were shuffled when they were written)."""

    def __init__(
        self,
        root: str,
        resolution: PositiveInt = 256,
        channels: int = 3,
        batch_size: PositiveInt = 32,
        num_workers: NonNegativeInt = 2,
        random_flip: bool = False,
        shuffle_seed: NonNegativeInt | None = None,
        cache_dir: str | None = None,
        pin_memory: bool = False,
        train_subset: PositiveInt | None = None,
        val_subset: PositiveInt | None = None,
        download: bool = True,
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise FieldError("data", "channels", f"must be 1 or 3, got {channels}", "{key}=1 or {key}=3")
        self.root, self.resolution, self.channels = str(root), resolution, channels
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.random_flip, self.shuffle_seed, self.cache_dir = random_flip, shuffle_seed, cache_dir
        self.train_subset, self.val_subset, self.download = train_subset, val_subset, download
        self.train_set: ShardImages | None = None
        self.val_set: ShardImages | None = None
        self.test_set: ShardImages | None = None  # the validation split
        self._resume_at: dict[str, Any] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        seed, key = self._seed(), part_key("data", "resolution")
        common = {"resolution": self.resolution, "channels": self.channels, "key": key}
        flip_seed = seed if self.random_flip else None
        self.train_set = _first(ShardImages(self._split("train"), **common, flip_seed=flip_seed, shuffle=True,
                                            seed=seed, drop_last=True, cache_dir=self._cache("train")),
                                self.train_subset)
        self.val_set = self.test_set = _first(ShardImages(self._split("val"), **common, shuffle=False,
                                                          cache_dir=self._cache("val")), self.val_subset)

    def train_dataloader(self) -> StreamingDataLoader:
        def epoch() -> int:
            return int(self.trainer.current_epoch) if self.trainer is not None else 0

        return _EpochLoader(self.train_set, epoch, dict(self._resume_at), batch_size=self.batch_size,
                            num_workers=self.num_workers, pin_memory=self.pin_memory)

    def val_dataloader(self) -> StreamingDataLoader:
        return StreamingDataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers,
                                   pin_memory=self.pin_memory)

    def test_dataloader(self) -> StreamingDataLoader:
        return self.val_dataloader()

    def resumed_batches(self) -> int | None:
        """After a mid-epoch resume, the batches of the interrupted epoch already trained (all
        ranks' samples over the global batch), where its batch count stands; else None."""
        at = self._resume_at
        if not at.get("samples") or self.trainer is None or self.trainer.current_epoch != at["epoch"]:
            return None
        return at["samples"] // (self.batch_size * self.trainer.world_size)

    def state_dict(self) -> dict[str, Any]:
        """The epoch, the samples of it all ranks consumed and (mid-epoch) ``ORDER_KEYS``."""
        position = fit_position(self.trainer)
        if position is None:
            return {}
        if not position.batches:
            return {"epoch": position.epoch, "samples": 0}  # an epoch starts afresh
        world = self.trainer.world_size
        return {"epoch": position.epoch, "samples": position.batches * self.batch_size * world,
                **self._order(world)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called on resume, before any training loader exists: the next one starts there."""
        self._resume_at = dict(state_dict)
        if self._resume_at.get("samples") and self.trainer is not None:
            self._check_same_order(self.trainer.world_size)

    def _order(self, world_size: int) -> dict[str, Any]:
        return {"root": self.root, "train_subset": self.train_subset, "seed": self._seed(),
                "world_size": int(world_size),
                "num_workers": self.num_workers, "batch_size": self.batch_size}

    def _check_same_order(self, world_size: int) -> None:
        stored, now = self._resume_at, self._order(world_size)
        changed = next((k for k in ORDER_KEYS if stored.get(k) != now[k]), None)
        if changed is None:
            return
        was, fix = stored.get(changed), "or start afresh with ckpt_path=null"
        problem = (f"is {now[changed]!r}, the run that wrote the checkpoint had {was!r}; it stopped "
                   f"{stored['samples']} samples into epoch {stored['epoch']}, and litdata's order, a "
                   "function of (shards, seed, ranks, workers, batch size), cannot be continued with another")
        if changed == "world_size":
            raise FieldError("trainer", "devices", f"the number of ranks {problem}",
                             f"resume on {was} ranks {fix}")
        field = {"seed": "shuffle_seed"}.get(changed, changed)
        raise FieldError("data", field, problem, f"{{key}}={was} {fix}")

    def _seed(self) -> int:
        if self.shuffle_seed is not None:
            return int(self.shuffle_seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _split(self, split: str) -> str:
        """The split's folder or URL; a local one must hold litdata's ``index.json``."""
        if "://" in self.root:
            if not self.download:
                raise FieldError("data", "root", f"{self.root} is a URL, and this data module does not "
                                 "download (a config read from a checkpoint never does)",
                                 "point {key} at a local copy")
            return f"{self.root.rstrip('/')}/{split}"
        folder = Path(self.root).expanduser() / split
        if not (folder / "index.json").is_file():
            raise FieldError("data", "root", f"{self.root} holds no {split} shards (no {folder}/index.json)",
                             f'convert images first: make shards ARGS="input=<images> out={self.root}"')
        return str(folder)

    def _cache(self, split: str) -> str | None:
        return None if self.cache_dir is None else str(Path(self.cache_dir).expanduser() / split)


def _first(dataset: ShardImages, count: int | None) -> ShardImages:
    """The first ``count`` items of ``dataset`` (all when None or more than it has)."""
    total = sum(end - start for start, end in dataset.region_of_interest)
    return dataset if count is None or count >= total else dataset.subset(slice(0, count))


class _EpochLoader(StreamingDataLoader):
    """litdata's loader over the trainer's current epoch (``epoch()``; litdata counts from 1), the
    first time at the position ``resume_at`` stores when it is that epoch's.

    Its own ``state_dict`` / ``load_state_dict``, which Lightning would save and restore, are
    switched off: the position lives in the data module's state alone, checked against the run's
    order first, and each epoch is the trainer's. (litdata's loader counts its own epochs; after a
    resumed epoch cut short, by ``limit_train_batches`` say, it starts the next one at the resumed
    position again.)"""

    state_dict = None
    load_state_dict = None

    def __init__(self, dataset: ShardImages, epoch: Callable[[], int], resume_at: dict[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._epoch, self._resume_at = epoch, resume_at

    def __iter__(self):
        at, self._resume_at = self._resume_at, {}
        epoch = max(self._epoch(), at.get("epoch", 0))  # Lightning may not have restored its count yet
        if at.get("samples") and at["epoch"] == epoch:
            consumed = at["samples"] // at["world_size"]  # by this rank
            StreamingDataLoader.load_state_dict(self, self._litdata_state(epoch, consumed))
        else:
            self.restore, self.current_epoch = False, epoch  # litdata's __iter__ adds 1
        return super().__iter__()

    def _litdata_state(self, epoch: int, consumed: int) -> dict[str, Any]:
        """litdata's loader state after this rank's first ``consumed`` samples of ``epoch``: the
        dataset's replay point and the worker whose turn it is (batches go round-robin)."""
        workers = max(self.num_workers, 1)
        dataset = self.dataset.state_dict(consumed, workers, self.batch_size) | {"current_epoch": epoch + 1}
        return {"dataset": dataset, "current_epoch": epoch + 1, "num_samples_yielded": consumed,
                "latest_worker_idx": (consumed // self.batch_size - 1) % workers}
