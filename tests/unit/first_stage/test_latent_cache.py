"""Latent cache: cached and encoded latents give the same loss; the key follows weights, the data's
content, indices and transforms; a corrupt or foreign file is rebuilt; inexact setups turn the
cache off."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from hydra.utils import instantiate

from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.data.sample_transforms import AddLowRes
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


def test_training_batches_carry_their_index_and_validation_batches_do_not(fmnist_dir):
    dm = datamodule(fmnist_dir)
    batch = next(iter(dm.train_dataloader()))
    first = [index for index, _ in dm.train_dataloader().sampler.pairs(0)[:16]]
    assert batch["index"].tolist() == first
    assert torch.equal(batch["image"], torch.stack([dm.train_set.base[i]["image"] for i in first]))
    assert "index" not in next(iter(dm.val_dataloader()))


def test_cached_and_encoded_latents_give_the_same_loss(module, fmnist_dir, tmp_path):
    dm = datamodule(fmnist_dir)
    stage = module.first_stage
    stage.fit_scale(torch.cat([b["image"] for b in dm.train_dataloader()]))
    cache = open_latent_cache(tmp_path, stage, dm, CPU)
    batch = next(iter(dm.train_dataloader()))
    assert cache.lookup(batch["index"]).std() > 0.1  # non-trivial latents
    cached = cache.lookup(batch["index"]) * stage.scale_factor
    torch.testing.assert_close(cached, stage.encode(batch["image"]), rtol=1e-5, atol=1e-5)
    losses = []
    for latent_cache, images in ((None, batch["image"]), (cache, torch.zeros_like(batch["image"]))):
        module.latent_cache = latent_cache  # with the cache, the images are not encoded (zeros: unused)
        torch.manual_seed(0)
        losses.append(module.diffusion_loss(batch | {"image": images}, module.model))
    module.latent_cache = None
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def key_of(stage, dm: FashionMNISTDataModule) -> str:
    return cache_key(stage, dm, dm.content_fingerprint())


def test_the_key_follows_weights_indices_and_transforms(module, fmnist_dir):
    stage = module.first_stage
    key = key_of(stage, datamodule(fmnist_dir))
    assert key_of(stage, datamodule(fmnist_dir, batch_size=8, num_workers=0)) == key  # loader only
    assert key_of(stage, datamodule(fmnist_dir, train_subset=63)) != key
    assert key_of(stage, datamodule(fmnist_dir, split_seed=1)) != key
    assert key_of(stage, datamodule(fmnist_dir, resolution=36)) != key
    low8 = key_of(stage, datamodule(fmnist_dir, sample_transforms=[AddLowRes(8)]))
    assert low8 not in (key, key_of(stage, datamodule(fmnist_dir, sample_transforms=[AddLowRes(16)])))
    weight = next(stage.autoencoder.parameters())
    with torch.no_grad():
        weight[(0,) * weight.ndim] += 1e-3
        try:
            assert key_of(stage, datamodule(fmnist_dir)) != key
        finally:
            weight[(0,) * weight.ndim] -= 1e-3


def test_a_corrupt_or_foreign_file_is_rebuilt(module, fmnist_dir, tmp_path):
    dm = datamodule(fmnist_dir)
    built = open_latent_cache(tmp_path, module.first_stage, dm, CPU)
    assert isinstance(built.summary()["build_seconds"], float) and built.path.is_file()
    assert list(tmp_path.iterdir()) == [built.path]  # no temporary file left
    reused = open_latent_cache(tmp_path, module.first_stage, dm, CPU)
    assert reused.summary()["build_seconds"] == "reused" and torch.equal(reused.latents, built.latents)

    data = bytearray(built.path.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the latents: the checksum disagrees
    built.path.write_bytes(bytes(data))
    rebuilt = open_latent_cache(tmp_path, module.first_stage, dm, CPU)
    assert rebuilt.summary()["build_seconds"] != "reused" and torch.equal(rebuilt.latents, built.latents)

    built.path.write_bytes(built.path.read_bytes()[:100])  # truncated
    assert open_latent_cache(tmp_path, module.first_stage, dm, CPU).summary()["build_seconds"] != "reused"

    other_data = datamodule(fmnist_dir, split_seed=1)
    other = open_latent_cache(tmp_path / "other", module.first_stage, other_data, CPU)
    other.path.replace(built.path)  # another key's file under this key's name
    again = open_latent_cache(tmp_path, module.first_stage, dm, CPU)
    assert again.summary()["build_seconds"] != "reused" and torch.equal(again.latents, built.latents)


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
    batch = next(iter(dm.train_dataloader()))
    cached = rebuilt.lookup(batch["index"]) * stage.scale_factor  # the new images' latents
    torch.testing.assert_close(cached, stage.encode(batch["image"]), rtol=1e-5, atol=1e-5)
    model = copy.deepcopy(module.model)  # perturbed: the fresh UNet's zero output layer ignores its input
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    losses = []
    for cache in (built, rebuilt):
        module.latent_cache = cache
        torch.manual_seed(0)
        losses.append(module.diffusion_loss(batch, model))
    module.latent_cache = None
    assert not torch.equal(built.latents, rebuilt.latents) and losses[0] != losses[1]


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
