"""Frozen first stage (scale_by_std, mismatch errors), EMA maths, generation wiring."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldmlab.first_stage.autoencoder import FirstStage
from ldmlab.optim.ema import EMA
from ldmlab.utils.errors import ConfigError


def test_ema_follows_the_closed_form_with_warmup():
    model = nn.Linear(3, 1, bias=False)
    ema = EMA(model, decay=0.9, warmup=10)
    avg = model.weight.detach().clone()
    for n in range(5):
        with torch.no_grad():
            model.weight.add_(1.0)
        decay = min(0.9, (1 + n) / (10 + n))
        avg = decay * avg + (1 - decay) * model.weight.detach()
        ema.update(model)
        assert torch.allclose(ema.shadow.weight, avg, atol=1e-6)
    assert int(ema.num_updates) == 5
    assert not ema.shadow.weight.requires_grad
    ema.train()
    assert not ema.shadow.training


def test_ema_state_round_trips_through_a_state_dict():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    ema.update(model)
    restored = EMA(nn.Linear(2, 2), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert int(restored.num_updates) == 1
    assert torch.equal(restored.shadow.weight, ema.shadow.weight)


def test_ema_rejects_a_bad_decay():
    with pytest.raises(ValueError, match="ema.decay"):
        EMA(nn.Linear(1, 1), decay=1.0)


def first_stage(checkpoint, **kwargs) -> FirstStage:
    args = dict(ckpt=str(checkpoint), log_dir="/nonexistent", expected_embed_dim=4,
                expected_downsample_factor=4, expected_channels=1)
    return FirstStage(**(args | kwargs))


def test_scale_by_std_gives_unit_std_latents(tiny_ae_ckpt, fmnist_dir):
    from ldmlab.data.fashion_mnist import FashionMNISTDataModule

    stage = first_stage(tiny_ae_ckpt)
    assert not bool(stage.scale_initialized)
    dm = FashionMNISTDataModule(str(fmnist_dir), batch_size=128, train_subset=256, val_subset=256)
    dm.setup()
    images = torch.cat([b["image"] for b in dm.train_dataloader()])
    scale = stage.fit_scale(images)
    assert bool(stage.scale_initialized) and scale == pytest.approx(float(stage.scale_factor))
    held_out = torch.cat([b["image"] for b in dm.val_dataloader()])
    assert stage.encode(images).std().item() == pytest.approx(1.0, abs=1e-3)
    assert stage.encode(held_out).std().item() == pytest.approx(1.0, abs=0.1)


def test_first_stage_is_frozen_and_stays_in_eval(tiny_ae_ckpt):
    stage = first_stage(tiny_ae_ckpt).train()
    assert not stage.autoencoder.training
    assert not any(p.requires_grad for p in stage.parameters())
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    z = stage.encode(x)
    assert z.shape == (2, 4, 8, 8) and stage.decode(z).shape == x.shape


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"expected_embed_dim": 8}, "first_stage_embed_dim"),
    ({"expected_downsample_factor": 8}, "first_stage_downsample_factor"),
    ({"expected_channels": 3}, "data.channels"),
    ({"ckpt": "/nonexistent.ckpt"}, "first_stage.ckpt"),
])
def test_mismatched_or_missing_checkpoint_names_the_key(tiny_ae_ckpt, kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        first_stage(tiny_ae_ckpt, **kwargs)


def test_a_non_ldmlab_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(ConfigError, match="stores no ldmlab run config"):
        first_stage(bogus)
