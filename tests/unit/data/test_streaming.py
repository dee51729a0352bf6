"""``data=streaming``: batches of the stored pixels and labels, flips that are a function of (seed,
epoch, item), disjoint equal shards per rank, and a resumed epoch that continues exactly where the
uninterrupted one goes, also when it is cut short (ranks simulated by litdata's distributed
environment)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from litdata.utilities import env
from PIL import Image

from ldmlab.data.shard_images import flips
from ldmlab.data.shards import write_split
from ldmlab.data.streaming import StreamingDataModule, _EpochLoader
from ldmlab.data.transforms import to_model_range
from ldmlab.utils.errors import ConfigError, DataError

N_TRAIN, BATCH = 48, 4


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """Shards of random 16×16 RGB images (labels i % 3) in ~4 KB chunks; the training images
    as (N, 3, 16, 16) in [-1, 1] and their labels, by index."""
    root, rng = tmp_path_factory.mktemp("shards"), np.random.default_rng(0)
    arrays = rng.integers(0, 256, (N_TRAIN + 4, 16, 16, 3), dtype=np.uint8)
    labels = [i % 3 for i in range(len(arrays))]
    write_split(root / "train", ((_png(a), y) for a, y in zip(arrays[:N_TRAIN], labels, strict=False)), "4KB")
    write_split(root / "val", ((_png(a), y) for a, y in zip(arrays[N_TRAIN:], labels[N_TRAIN:], strict=True)),
                "4KB")
    images = to_model_range(torch.from_numpy(arrays[:N_TRAIN]).permute(0, 3, 1, 2))
    return root, images, torch.tensor(labels[:N_TRAIN])


@pytest.fixture
def ranks(monkeypatch):
    """``ranks(world, rank)``: litdata sees that distributed environment (workers are forked)."""
    def use(world: int, rank: int) -> None:
        monkeypatch.setattr(env._DistributedEnv, "detect", classmethod(lambda cls: cls(world, rank, 1)))
    return use


def _module(root: Path, **kwargs) -> StreamingDataModule:
    kwargs = {"resolution": 16, "batch_size": BATCH, "num_workers": 2, "shuffle_seed": 5} | kwargs
    dm = StreamingDataModule(str(root), **kwargs)
    dm.setup()
    return dm


def _epoch(loader) -> list[dict]:
    return list(loader)


def _indices(batches: list[dict], images: torch.Tensor) -> list[int]:
    """The training index of every image in ``batches`` (found by its pixels, flipped or not)."""
    found = []
    for image in torch.cat([b["image"] for b in batches]):
        match = ((images == image).flatten(1).all(1) | (images.flip(-1) == image).flatten(1).all(1)).nonzero()
        assert len(match) == 1
        found.append(int(match))
    return found


def test_batches_are_the_stored_pixels_and_labels(shards):
    root, images, labels = shards
    dm = _module(root)
    batches = _epoch(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) == N_TRAIN // BATCH
    for batch in batches:
        assert batch["image"].shape == (BATCH, 3, 16, 16) and batch["image"].dtype == torch.float32
        assert batch["label"].dtype == torch.long
    order = _indices(batches, images)
    assert sorted(order) == list(range(N_TRAIN)) and order != sorted(order)  # all once, shuffled
    got = torch.cat([b["image"] for b in batches])
    assert torch.equal(got, images[order]) and got.min() >= -1 and got.max() <= 1  # no flips: not asked
    assert torch.equal(torch.cat([b["label"] for b in batches]), labels[order])
    val = _epoch(dm.val_dataloader())
    assert [b["label"].tolist() for b in val] == [[i % 3 for i in range(N_TRAIN, N_TRAIN + 4)]]
    subset = _module(root, train_subset=8, val_subset=1)
    assert sorted(_indices(_epoch(subset.train_dataloader()), images)) == list(range(8))
    assert len(subset.val_set) == 1
    gray = _module(root, channels=1).val_set[0]["image"]
    assert gray.shape == (1, 16, 16) and gray.min() >= -1 and gray.max() <= 1


def test_flips_are_a_function_of_seed_epoch_and_item(shards):
    root, images, _ = shards
    assert [flips(5, 1, i) for i in range(64)] == [flips(5, 1, i) for i in range(64)]
    draws = {(s, e): [flips(s, e, i) for i in range(256)] for s, e in ((5, 1), (5, 2), (6, 1))}
    assert 96 < sum(draws[5, 1]) < 160 and draws[5, 1] != draws[5, 2] and draws[5, 1] != draws[6, 1]
    dm = _module(root, random_flip=True)
    for epoch in (0, 1):
        batches = _epoch(_EpochLoader(dm.train_set, lambda e=epoch: e, {}, batch_size=BATCH, num_workers=2))
        got = torch.cat([b["image"] for b in batches])
        order = _indices(batches, images)
        flipped = [flips(5, epoch + 1, i) for i in order]  # litdata counts epochs from 1
        assert 0 < sum(flipped) < N_TRAIN
        for image, index, flip in zip(got, order, flipped, strict=True):
            assert torch.equal(image, images[index].flip(-1) if flip else images[index])


def test_ranks_get_disjoint_equal_shards(shards, ranks):
    root, images, _ = shards
    seen = []
    for rank in range(2):
        ranks(2, rank)
        seen.append(_indices(_epoch(_module(root).train_dataloader()), images))
    assert len(seen[0]) == len(seen[1]) == N_TRAIN // 2 and not set(seen[0]) & set(seen[1])


@pytest.mark.parametrize(("world", "workers"), [(1, 2), (2, 2), (1, 0)])
def test_a_resumed_epoch_continues_the_uninterrupted_one_exactly(shards, ranks, world, workers):
    """Epoch 1 stopped after k batches of every rank and resumed from the module's state goes on with
    the uninterrupted epoch's next batch; the loader then runs epoch 2 as the uninterrupted run does."""
    root = shards[0]
    for rank in range(world):
        ranks(world, rank)
        dm = _module(root, num_workers=workers)
        straight = _EpochLoader(dm.train_set, lambda: 1, {}, batch_size=BATCH, num_workers=workers)
        whole = _epoch(straight)
        straight._epoch = lambda: 2
        after = _epoch(straight)
        for k in (1, 2, len(whole) - 1):
            resumed = _module(root, num_workers=workers)
            order = resumed._order(world)
            resumed.load_state_dict({"epoch": 1, "samples": k * BATCH * world, **order})
            loader = resumed.train_dataloader()  # no trainer: epoch 0, the stored epoch 1 wins
            rest = _epoch(loader)
            assert len(rest) == len(whole) - k
            for a, b in zip(whole[k:], rest, strict=True):
                assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        loader._epoch = lambda: 2
        nxt = _epoch(loader)
        assert all(torch.equal(a["image"], b["image"]) for a, b in zip(after, nxt, strict=True))
        resumed.load_state_dict({"epoch": 1, "samples": BATCH * world, **order})
        cut = resumed.train_dataloader()
        assert torch.equal(next(iter(cut))["image"], whole[1]["image"])  # cut short: limit_train_batches
        cut._epoch = lambda: 2  # the next epoch is epoch 2, not the resumed one again
        assert all(torch.equal(a["image"], b["image"]) for a, b in zip(after, _epoch(cut), strict=True))


@pytest.mark.parametrize(("change", "message"), [
    ({"num_workers": 3}, "data.num_workers: is 2, the run that wrote the checkpoint had 3; it stopped 8 "
                         "samples into epoch 1"),
    ({"seed": 9}, "data.shuffle_seed: is 5, the run that wrote the checkpoint had 9"),
    ({"batch_size": 2}, "data.batch_size: is 4, "),
    ({"world_size": 1}, "trainer.devices: the number of ranks is 2, the run that wrote the checkpoint had 1"),
])
def test_a_mid_epoch_resume_under_another_order_refuses(shards, change, message):
    dm = _module(shards[0])
    dm.trainer = SimpleNamespace(world_size=2, current_epoch=0)
    stored = {"epoch": 1, "samples": 8, **dm._order(2)}
    dm.load_state_dict(stored)  # the same order: accepted
    with pytest.raises(ConfigError) as caught:
        dm.load_state_dict(stored | change)
    assert str(caught.value).startswith(message) and "Fix: " in str(caught.value)
    if "seed" in change:
        assert str(caught.value).endswith("Fix: data.shuffle_seed=9 or start afresh with ckpt_path=null")
    dm.load_state_dict({"epoch": 2, "samples": 0})  # an epoch's end resumes under any order


def test_bad_roots_and_resolutions_name_their_key(shards, tmp_path):
    with pytest.raises(ConfigError, match=r"^data.root: .* holds no train shards .* Fix: convert images"):
        _module(tmp_path)
    with pytest.raises(ConfigError, match=r"^data.root: s3://bucket/shards is a URL, and this data module "
                                          r"does not download .* Fix: point data.root at a local copy$"):
        _module("s3://bucket/shards", download=False)
    dm = _module(shards[0], resolution=8, num_workers=0)
    with pytest.raises(DataError, match=r"^data.resolution: the shards hold 16x16 images, not 8x8. "
                                        r"Fix: data.resolution=16 if they are square"):
        next(iter(dm.val_dataloader()))
