"""Noisy-latent classifier (classifier guidance): network shapes and checks, RNG-neutral bucketed
validation, the first-stage fingerprint, and the checkpoint round trip through the safe loader."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ldmlab.checkpoints import FIRST_STAGE_CONFIG
from ldmlab.classifier.noisy_loading import load_noisy_classifier, resolve_noisy_classifier
from ldmlab.classifier.noisy_network import NoisyLatentClassifier
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.first_stage.autoencoder import FirstStage
from ldmlab.models.noisy_classifier import CHECKPOINT_KEY, NoisyClassifierModule, t_buckets
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config

TINY = {"in_channels": 4, "num_classes": 10, "model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attention_resolutions": [2], "num_heads": 2, "pool_heads": 2}
KEY = "guidance.classifier_ckpt"


@pytest.fixture(scope="module")
def autoencoder_config() -> dict:
    """The default f=4 autoencoder's architecture at a tiny width (as a stage-2 checkpoint stores it)."""
    cfg = compose_config("train_ae", ["autoencoder.encoder.ch=8", "logger=none"])
    return OmegaConf.to_container(cfg.autoencoder, resolve=True)


def make_module(autoencoder_config: dict, tmp_path: Path, **kwargs) -> NoisyClassifierModule:
    first_stage = FirstStage(None, "/nonexistent", 4, 4, 1, scale_factor=0.5, scale_by_std=False,
                             autoencoder_config=autoencoder_config)
    return NoisyClassifierModule(first_stage, ScaledLinearSchedule(1000), NoisyLatentClassifier(**TINY),
                                 partial(torch.optim.AdamW, lr=1e-3), resolution=32, out_dir=str(tmp_path),
                                 **kwargs)


def save_checkpoint(module: NoisyClassifierModule, path: Path) -> Path:
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_shapes_and_config_rebuild():
    net = NoisyLatentClassifier(**TINY)
    logits = net(torch.randn(3, 4, 8, 16), torch.tensor([0, 500, 999]))
    assert logits.shape == (3, 10)
    rebuilt = NoisyLatentClassifier(**net.config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]
    assert json.loads(json.dumps(net.config)) == net.config  # plain data


def test_logits_depend_on_t_and_gradients_reach_every_parameter():
    net = NoisyLatentClassifier(**TINY)
    z = torch.randn(4, 4, 8, 8)
    assert not torch.allclose(net(z, torch.zeros(4, dtype=torch.long)), net(z, torch.full((4,), 900)))
    torch.nn.functional.cross_entropy(net(z, torch.tensor([1, 10, 100, 999])), torch.arange(4)).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, missing


@pytest.mark.parametrize(("change", "key"), [
    ({"num_classes": 1}, "noisy_classifier.num_classes"),
    ({"model_channels": 0}, "noisy_classifier.model_channels"),
    ({"channel_mult": []}, "noisy_classifier.channel_mult"),
    ({"attention_resolutions": [4]}, "noisy_classifier.attention_resolutions"),
    ({"num_heads": 3}, "noisy_classifier.num_heads"),
    ({"pool_heads": 5}, "noisy_classifier.pool_heads"),
    ({"dropout": 1.0}, "noisy_classifier.dropout"),
])
def test_bad_sizes_name_the_key(change, key):
    with pytest.raises(ConfigError, match=rf"^{key}: .*Fix: "):
        NoisyLatentClassifier(**(TINY | change))


@pytest.mark.parametrize(("shape", "t", "match"), [
    ((2, 3, 8, 8), (2,), "in_channels"), ((2, 4, 7, 7), (2,), "divisible"), ((2, 4, 8, 8), (3,), "t must")])
def test_bad_inputs_are_explained(shape, t, match):
    with pytest.raises(ValueError, match=match):
        NoisyLatentClassifier(**TINY)(torch.randn(shape), torch.zeros(t, dtype=torch.long))


def test_t_buckets_partition_the_timesteps():
    assert t_buckets(1000, 10)[:2] == [(0, 100), (100, 200)] and t_buckets(1000, 10)[-1] == (900, 1000)
    buckets = t_buckets(7, 3)
    assert [t for lo, hi in buckets for t in range(lo, hi)] == list(range(7))


def test_validation_is_rng_neutral_and_counts_every_bucket(autoencoder_config, tmp_path):
    module = make_module(autoencoder_config, tmp_path).eval()
    batch = {"image": torch.rand(5, 1, 32, 32) * 2 - 1, "label": torch.tensor([0, 1, 2, 3, 4])}
    stats = []
    for _ in range(2):
        module.on_validation_epoch_start()
        state = torch.get_rng_state()
        module.validation_step(batch, batch_idx=3)
        assert torch.equal(torch.get_rng_state(), state)
        stats.append(module._val_stats.clone())
    assert torch.equal(stats[0], stats[1])  # same t and noise every time
    correct, count, loss = stats[0]
    assert count.tolist() == [5.0] * 10 and bool(((correct >= 0) & (correct <= 5)).all())
    assert bool((loss > 0).all())


def test_fingerprint_tracks_the_weights(autoencoder_config, tmp_path):
    module = make_module(autoencoder_config, tmp_path)
    same = make_module(autoencoder_config, tmp_path)
    same.first_stage.load_state_dict(module.first_stage.state_dict())
    fingerprint = module.first_stage.fingerprint()
    assert len(fingerprint) == 16 and same.first_stage.fingerprint() == fingerprint
    with torch.no_grad():
        next(same.first_stage.autoencoder.parameters()).add_(1e-3)
    assert same.first_stage.fingerprint() != fingerprint


@pytest.mark.parametrize("ema_decay", [0.9, None])
def test_checkpoint_round_trip_gives_identical_logits(autoencoder_config, tmp_path, ema_decay):
    module = make_module(autoencoder_config, tmp_path, ema_decay=ema_decay)
    with torch.no_grad():  # a "trained" network whose EMA differs from it
        for p in module.network.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    if module.ema is not None:
        module.ema.update(module.network)
    loaded = load_noisy_classifier(save_checkpoint(module, tmp_path / "c.ckpt"))
    expected = module.ema.shadow if module.ema is not None else module.network
    z, t = torch.randn(3, 4, 8, 8), torch.tensor([0, 400, 999])
    assert torch.equal(loaded.network(z, t), expected.eval()(z, t))
    assert not loaded.network.training and not any(p.requires_grad for p in loaded.network.parameters())
    assert loaded.num_classes == 10 and loaded.latent_shape == (4, 8, 8) and loaded.scale_factor == 0.5
    assert loaded.first_stage_fingerprint == module.first_stage.fingerprint()
    assert loaded.alphas_cumprod.dtype == torch.float64 and loaded.alphas_cumprod.shape == (1000,)
    assert torch.allclose(loaded.alphas_cumprod.float(), module.schedule.alphas_cumprod)


def test_checkpoint_record_is_plain_data(autoencoder_config, tmp_path):
    checkpoint = {}
    make_module(autoencoder_config, tmp_path).on_save_checkpoint(checkpoint)
    record = checkpoint[CHECKPOINT_KEY]
    assert json.loads(json.dumps(record)) == record
    assert set(record) == {"network", "num_classes", "latent_shape", "scale_factor",
                           "first_stage_fingerprint", "alphas_cumprod"}
    assert checkpoint[FIRST_STAGE_CONFIG] == autoencoder_config  # stage 2's key for the same config


class Payload:
    """Any non-tensor object: ``torch.load(weights_only=True)`` refuses to unpickle it."""


@pytest.mark.parametrize("tamper", ["pickled_object", "string_field", "target_field", "no_record", "shape"])
def test_unsafe_or_broken_checkpoints_are_refused(autoencoder_config, tmp_path, tamper):
    module = make_module(autoencoder_config, tmp_path)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    record = checkpoint[CHECKPOINT_KEY]
    if tamper == "pickled_object":
        checkpoint["extra"] = Payload()
    elif tamper == "string_field":
        record["network"]["channel_mult"] = "[1, 2]"
    elif tamper == "target_field":
        record["network"]["_target_"] = "builtins.open"
    elif tamper == "no_record":
        del checkpoint[CHECKPOINT_KEY]
    else:
        record["latent_shape"] = [3, 8, 8]
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(ConfigError, match=rf"^{KEY}: .*bad.ckpt.*make train-noisy-classifier"):
        load_noisy_classifier(tmp_path / "bad.ckpt")


def test_resolve_finds_explicit_files_run_dirs_and_latest(tmp_path):
    run = tmp_path / "train_noisy_classifier" / "runs" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(b"x")
    (run / "summary.json").write_text(json.dumps({"checkpoints": {"last": str(last)}}))
    (tmp_path / "train_noisy_classifier" / "latest").symlink_to(run)
    assert resolve_noisy_classifier(str(last), "/nonexistent") == last
    assert resolve_noisy_classifier(str(run), "/nonexistent") == last
    assert resolve_noisy_classifier(None, str(tmp_path)) == last


@pytest.mark.parametrize("case", ["missing_file", "dir_without_summary", "no_latest"])
def test_resolve_errors_name_the_key_and_the_fix(tmp_path, case):
    ckpt = {"missing_file": str(tmp_path / "nope.ckpt"), "dir_without_summary": str(tmp_path),
            "no_latest": None}[case]
    with pytest.raises(ConfigError, match=rf"^{KEY}: .*Fix: run `make train-noisy-classifier` or give "
                                          rf"guidance.classifier_ckpt=\.\.\.$"):
        resolve_noisy_classifier(ckpt, str(tmp_path))


def test_check_data_names_the_mismatched_key(autoencoder_config, tmp_path, fmnist_dir):
    from ldmlab.data.fashion_mnist import FashionMNISTDataModule

    module = make_module(autoencoder_config, tmp_path)
    module.check_data(FashionMNISTDataModule(str(fmnist_dir)))
    with pytest.raises(ConfigError, match=r"^data.resolution: "):
        module.check_data(FashionMNISTDataModule(str(fmnist_dir), resolution=24))
    module.network = NoisyLatentClassifier(**(TINY | {"num_classes": 7}))
    with pytest.raises(ConfigError, match=r"^noisy_classifier.num_classes: .*num_classes=10"):
        module.check_data(FashionMNISTDataModule(str(fmnist_dir)))
