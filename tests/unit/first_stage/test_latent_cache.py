"""Latent cache: cached and encoded latents give the same loss (with and without the random
flip); the loader then serves latents, not pixels; the key follows weights, the data's content,
indices, flip and transforms; a corrupt, foreign or missing shard is rebuilt and the others kept;
inexact setups turn the cache off."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import default_collate

from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.data.random_flip import flips
from ldmlab.data.sample_transforms import AddCaption, AddLowRes
from ldmlab.first_stage.identity import IdentityFirstStage
from ldmlab.first_stage.latent_cache import cache_key, open_latent_cache
from tests.conftest import TINY_LDM, compose_config
from tests.unit.data.test_content_fingerprint import image_folder, overwrite_pixels, write_images

CPU = torch.device("cpu")


def datamodule(fmnist_dir, **kwargs) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule(str(fmnist_dir), **({"batch_size": 16, "train_subset": 64, "val_subset": 32}
                                                    | kwargs))
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def module(tiny_ae_ckpt):
    cfg = compose_config("train_ldm", [f"first_stage.ckpt={tiny_ae_ckpt}", *TINY_LDM, "logger=none"])
    return instantiate(cfg.module)


def pixel_batch(dm, index: list[int], seeds: list[int]) -> torch.Tensor:
    """The training images of ``index`` as the pixel path yields them for these per-sample seeds."""
    return torch.stack([dm.train_set[(i, s)]["image"] for i, s in zip(index, seeds, strict=True)])


def test_training_batches_carry_their_index_and_validation_batches_do_not(fmnist_dir):
    dm = datamodule(fmnist_dir)
    batch = next(iter(dm.train_dataloader()))
    first = [index for index, _ in dm.train_dataloader().sampler.pairs(0)[:16]]
    assert batch["index"].tolist() == first
    assert torch.equal(batch["image"], torch.stack([dm.train_set.base[i]["image"] for i in first]))
    assert "index" not in next(iter(dm.val_dataloader()))


@pytest.mark.parametrize("random_flip", [False, True])
def test_the_loader_serves_cached_latents_giving_the_encoded_loss(module, fmnist_dir, tmp_path, random_flip):
    dm = datamodule(fmnist_dir, random_flip=random_flip)
    stage = module.first_stage
    stage.fit_scale(torch.cat([b["image"] for b in dm.train_dataloader()]))
    pairs = dm.train_dataloader().sampler.pairs(0)[:16]
    pixels = next(iter(dm.train_dataloader()))
    cache = open_latent_cache(tmp_path, stage, dm, CPU, shard_size=20)  # 64 items: 4 shards
    assert cache.store.views == (2 if random_flip else 1) and len(list(tmp_path.glob("*/shard-*.npy"))) == 4
    dm.serve_latents(cache.store, keep_image=False)
    batch = next(iter(dm.train_dataloader()))
    assert "image" not in batch and set(batch) == {"latent", "label", "index"}
    one_by_one = default_collate([dm.train_set[pair] for pair in pairs])  # the batch is fetched whole
    assert all(torch.equal(batch[k], one_by_one[k]) for k in batch)
    assert torch.equal(batch["label"], pixels["label"]) and torch.equal(batch["index"], pixels["index"])
    index, seeds = zip(*pairs, strict=True)
    if random_flip:  # the seeds flip about half of them; the pixel path mirrors the same ones
        mirrored = [flips(s) for s in seeds]
        assert 3 <= sum(mirrored) <= 13
        plain = torch.stack([dm.train_set.items.base[i]["image"] for i in index])
        for k, m in enumerate(mirrored):
            assert torch.equal(pixels["image"][k], plain[k].flip(-1) if m else plain[k])
    latents = batch["latent"] * stage.scale_factor
    assert latents.std() > 0.1  # non-trivial latents
    torch.testing.assert_close(latents, stage.encode(pixels["image"]), rtol=1e-5, atol=1e-5)
    losses = []
    for served in (pixels, batch):
        torch.manual_seed(0)
        losses.append(module.diffusion_loss(served, module.model))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_label_only_transforms_skip_pixels_and_pixel_readers_keep_them(module, fmnist_dir, tmp_path):
    captions = datamodule(fmnist_dir, sample_transforms=[AddCaption()])
    cache = open_latent_cache(tmp_path, module.first_stage, captions, CPU)
    expected = next(iter(captions.train_dataloader()))
    captions.serve_latents(cache.store, keep_image=False)
    batch = next(iter(captions.train_dataloader()))
    assert "image" not in batch and batch["caption"] == expected["caption"]
    lowres = datamodule(fmnist_dir, sample_transforms=[AddLowRes(8)])
    lowres.serve_latents(open_latent_cache(tmp_path, module.first_stage, lowres, CPU).store, keep_image=False)
    assert {"image", "lowres", "latent"} <= set(next(iter(lowres.train_dataloader())))
    reader = datamodule(fmnist_dir)
    reader.serve_latents(open_latent_cache(tmp_path, module.first_stage, reader, CPU).store, keep_image=True)
    assert {"image", "latent"} <= set(next(iter(reader.train_dataloader())))


def key_of(stage, dm: FashionMNISTDataModule) -> str:
    return cache_key(stage, dm, dm.content_fingerprint())


def test_the_key_follows_weights_indices_flip_and_transforms(module, fmnist_dir):
    stage = module.first_stage
    key = key_of(stage, datamodule(fmnist_dir))
    assert key_of(stage, datamodule(fmnist_dir, batch_size=8, num_workers=0, pin_memory=True)) == key
    assert key_of(stage, datamodule(fmnist_dir, train_subset=63)) != key
    assert key_of(stage, datamodule(fmnist_dir, split_seed=1)) != key
    assert key_of(stage, datamodule(fmnist_dir, resolution=36)) != key
    assert key_of(stage, datamodule(fmnist_dir, random_flip=True)) != key
    low8 = key_of(stage, datamodule(fmnist_dir, sample_transforms=[AddLowRes(8)]))
    assert low8 not in (key, key_of(stage, datamodule(fmnist_dir, sample_transforms=[AddLowRes(16)])))
    weight = next(stage.autoencoder.parameters())
    with torch.no_grad():
        weight[(0,) * weight.ndim] += 1e-3
        try:
            assert key_of(stage, datamodule(fmnist_dir)) != key
        finally:
            weight[(0,) * weight.ndim] -= 1e-3


def shards(cache) -> list:
    return sorted(cache.path.glob("shard-*.npy"))


def test_a_corrupt_foreign_or_missing_shard_is_rebuilt_and_whole_ones_kept(module, fmnist_dir, tmp_path):
    dm = datamodule(fmnist_dir)
    built = open_latent_cache(tmp_path, module.first_stage, dm, CPU, shard_size=20)
    assert isinstance(built.summary()["build_seconds"], float)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # no temporary file left
    files = shards(built)
    content = {p: p.read_bytes() for p in files}
    manifest = json.loads((built.path / "manifest.json").read_text())
    assert manifest["shape"] == [64, 1, *built.store.row(0).shape] and len(manifest["shards"]) == 4
    reused = open_latent_cache(tmp_path, module.first_stage, dm, CPU, shard_size=20)
    assert reused.summary()["build_seconds"] == "reused"

    def reopened_and_rebuilt() -> set:
        stamps = {p: p.stat().st_mtime_ns for p in shards(built) if p.exists()}
        again = open_latent_cache(tmp_path, module.first_stage, dm, CPU, shard_size=20)
        assert again.summary()["build_seconds"] != "reused"
        assert {p: p.read_bytes() for p in shards(again)} == content  # the same latents again
        return {p for p in files if p not in stamps or p.stat().st_mtime_ns != stamps[p]}

    data = bytearray(files[1].read_bytes())
    data[-5] ^= 0xFF  # a flipped bit: the checksum disagrees
    files[1].write_bytes(bytes(data))
    assert reopened_and_rebuilt() == {files[1]}
    files[2].write_bytes(files[2].read_bytes()[:100])  # truncated
    assert reopened_and_rebuilt() == {files[2]}
    files[3].unlink()  # an interrupted build: the other shards are kept
    (built.path / "manifest.json").unlink()
    assert reopened_and_rebuilt() == {files[3]}
    other = open_latent_cache(tmp_path / "other", module.first_stage, datamodule(fmnist_dir, split_seed=1),
                              CPU, shard_size=20)
    shards(other)[0].replace(files[0])  # another key's shard under this key's name
    assert reopened_and_rebuilt() == {files[0]}


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_new_pixels_under_the_same_names_rebuild_the_cache(module, tmp_path, keep_mtime):
    """Every image overwritten (same names and sizes; also with the old mtimes forced back): the
    cache is rebuilt from the new pixels and the training loss changes; unchanged data reuses it."""
    stage, images = module.first_stage, tmp_path / "images"
    write_images(images, 24, seed=0)

    def opened():
        dm = image_folder(images)
        dm.setup()
        return dm, open_latent_cache(tmp_path / "cache", stage, dm, CPU)

    _, built = opened()
    assert isinstance(built.summary()["build_seconds"], float)
    _, reused = opened()
    assert reused.summary()["build_seconds"] == "reused" and reused.key == built.key  # no needless rebuild
    overwrite_pixels(images, seed=1, keep_mtime=keep_mtime)
    dm, rebuilt = opened()
    assert rebuilt.summary()["build_seconds"] != "reused" and rebuilt.key != built.key
    pixels = next(iter(dm.train_dataloader()))
    model = copy.deepcopy(module.model)  # perturbed: the fresh UNet's zero output layer ignores its input
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    losses = []
    for cache in (built, rebuilt):
        dm.serve_latents(cache.store, keep_image=False)
        batch = next(iter(dm.train_dataloader()))
        torch.manual_seed(0)
        losses.append(module.diffusion_loss(batch, model))
    torch.testing.assert_close(batch["latent"] * stage.scale_factor, stage.encode(pixels["image"]),
                               rtol=1e-5, atol=1e-5)  # the new images' latents
    assert losses[0] != losses[1]


def test_data_that_cannot_tell_its_content_is_not_cached(module, fmnist_dir, tmp_path, caplog):
    dm = datamodule(fmnist_dir)
    dm.content_fingerprint = lambda: None
    with caplog.at_level(logging.INFO, logger="ldmlab.first_stage.latent_cache"):
        assert open_latent_cache(tmp_path, module.first_stage, dm, CPU) is None
    assert "content_fingerprint() cannot tell" in caplog.records[0].message and not list(tmp_path.iterdir())


class Flip:
    """A pixel-changing sample transform."""

    def __call__(self, sample: dict, seed: int) -> dict:
        return sample | {"image": sample["image"].flip(-1) if seed % 2 else sample["image"]}


def test_inexact_setups_turn_the_cache_off_with_one_line(module, fmnist_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ldmlab.first_stage.latent_cache"):
        assert open_latent_cache(tmp_path, module.first_stage,
                                 datamodule(fmnist_dir, sample_transforms=[Flip()]), CPU) is None
        assert open_latent_cache(tmp_path, IdentityFirstStage(1), datamodule(fmnist_dir), CPU) is None
    assert len(caplog.records) == 2 and "data.sample_transforms has Flip" in caplog.records[0].message
    assert "IdentityFirstStage" in caplog.records[1].message and not list(tmp_path.iterdir())
