"""Training data order as a pure function of (seed, epoch, position); loading never touches the
global RNGs; global RNG states survive a weights-only checkpoint round trip."""

from __future__ import annotations

import io
import random

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from ldmlab.callbacks.rng_state import capture, restore
from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.data.resumable_sampler import ResumableSampler


def _shard(num_items: int, rank: int, world: int, **kwargs) -> ResumableSampler:
    sampler = ResumableSampler(num_items, seed=3, **kwargs)
    sampler.rank, sampler.world = rank, world
    return sampler


def test_order_depends_only_on_seed_and_epoch():
    a, b = ResumableSampler(50, seed=3), ResumableSampler(50, seed=3)
    assert list(a) == list(b)
    assert sorted(i for i, _ in a) == list(range(50))
    b.set_epoch(1)
    assert list(a) != list(b) and list(ResumableSampler(50, seed=4)) != list(a)
    seeds = [s for _, s in a]
    assert len(set(seeds)) > 45, "each position gets its own augmentation seed"


def test_resume_skips_the_consumed_samples_of_that_epoch_only():
    full = list(ResumableSampler(40, seed=3, epoch=2))
    sampler = ResumableSampler(40, seed=3, epoch=2)
    sampler.resume(2, skip=12)
    assert list(sampler) == full[12:]
    sampler.set_epoch(3)
    assert len(list(sampler)) == 40


def test_ranks_shard_and_pad_like_distributed_sampler():
    shards = [list(_shard(10, rank, 3)) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    indices = [i for s in shards for i, _ in s]
    assert set(indices) == set(range(10)) and len(indices) == 12
    unshuffled = [[i for i, _ in _shard(10, rank, 3, shuffle=False)] for rank in range(3)]

    class Ten:
        def __len__(self) -> int:
            return 10

    assert unshuffled == [list(DistributedSampler(Ten(), 3, rank, shuffle=False)) for rank in range(3)]


def test_loading_never_draws_from_the_global_generators(fmnist_dir):
    dm = FashionMNISTDataModule(str(fmnist_dir), batch_size=8, train_subset=32, val_subset=16)
    dm.setup()
    before = capture()
    train = [batch["label"] for batch in dm.train_dataloader()]
    [batch["label"] for batch in dm.val_dataloader()]
    after = capture()
    assert torch.equal(before["torch"], after["torch"]) and before["python"] == after["python"]
    assert torch.equal(before["numpy"]["keys"], after["numpy"]["keys"])
    again = [batch["label"] for batch in dm.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(train, again, strict=True))


def test_datamodule_position_resumes_the_next_batch(fmnist_dir):
    dm = FashionMNISTDataModule(str(fmnist_dir), batch_size=8, train_subset=48, val_subset=16)
    dm.setup()
    dm.load_state_dict({"epoch": 0, "samples": 0})
    whole = [batch["label"] for batch in dm.train_dataloader()]
    dm.load_state_dict({"epoch": 0, "samples": 32})
    rest = [batch["label"] for batch in dm.train_dataloader()]
    assert len(whole) == 6 and all(torch.equal(a, b) for a, b in zip(whole[4:], rest, strict=True))


def test_rng_states_round_trip_through_a_weights_only_checkpoint():
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    random.gauss(0, 1)  # a cached gaussian in python's state
    buffer = io.BytesIO()
    torch.save({"ranks": [capture()]}, buffer)
    expected = torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1)
    buffer.seek(0)
    restore(torch.load(buffer, weights_only=True)["ranks"][0])
    drawn = torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1)
    assert torch.equal(expected[0], drawn[0]) and np.array_equal(expected[1], drawn[1])
    assert expected[2:] == drawn[2:]
