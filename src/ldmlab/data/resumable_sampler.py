"""Training-order sampler whose output is a pure function of (seed, epoch, position)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` pairs: a permutation of ``range(num_items)`` drawn from its
    own ``torch.Generator`` seeded with ``seed + epoch``, each position paired with a per-sample
    seed for data augmentation drawn from the same generator. Nothing touches the global RNGs.

    Under ``torch.distributed`` each rank takes every ``world``-th pair of the list padded (by
    repeating its start) to a multiple of ``world``, as ``DistributedSampler`` does, so
    ``len(self) = ceil(num_items / world)`` on every rank.

    ``resume(epoch, skip)``: the next iteration over ``epoch`` starts after the first ``skip``
    pairs of the padded list (the samples all ranks together consumed before a checkpoint: with
    interleaved shards, rank r's first k pairs are positions r, r + world, ..., so what ``world``
    ranks consumed is always a prefix); the rest, padded again by repeating its start to a
    multiple of ``world``, is sharded the same way. The same ``world`` gives exactly the
    uninterrupted shards; another ``world`` (or batch size) continues the same global order,
    repeating at most ``world - 1`` pairs as padding. Other epochs are whole. ``set_epoch`` is
    called by Lightning before each epoch.
    """

    def __init__(self, num_items: int, seed: int, shuffle: bool = True, epoch: int = 0) -> None:
        self.num_items, self.seed, self.shuffle, self.epoch = num_items, int(seed), shuffle, epoch
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if distributed else 0
        self.world = dist.get_world_size() if distributed else 1
        self._resume_epoch, self._skip = -1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, skip: int) -> None:
        self._resume_epoch, self._skip = epoch, skip

    def __len__(self) -> int:
        return -(-self.num_items // self.world)

    def pairs(self, epoch: int, skip: int = 0) -> list[tuple[int, int]]:
        """This rank's list for ``epoch`` after the first ``skip`` pairs of all ranks."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = self.num_items
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator)
        pairs = _padded(list(zip(order.tolist(), seeds.tolist(), strict=True)), len(self) * self.world)
        rest = pairs[skip:]
        rest = _padded(rest, -(-len(rest) // self.world) * self.world)
        return rest[self.rank :: self.world]

    def remaining(self) -> int:
        """How many pairs this rank yields in the current epoch (after a resume skip)."""
        return len(self.pairs(self.epoch, self._skip if self.epoch == self._resume_epoch else 0))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip = self._skip if self.epoch == self._resume_epoch else 0
        return iter(self.pairs(self.epoch, skip))


def _padded(pairs: list, total: int) -> list:
    """``pairs`` extended to ``total`` by repeating its start (more than once if tiny)."""
    pairs = list(pairs)
    while pairs and len(pairs) < total:
        pairs += pairs[: total - len(pairs)]
    return pairs
