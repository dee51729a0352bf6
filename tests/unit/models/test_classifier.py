"""Domain classifier: network shapes, augmentation, a short real fit, checkpoint round trip."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ldmlab.classifier.loading import ckpt_key, load_classifier
from ldmlab.classifier.network import ClassifierNetwork
from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.models.classifier import ClassifierModule, random_shift_flip
from ldmlab.utils.errors import ConfigError

TINY_NETWORK = {"widths": (8, 16, 16), "groups": 4}


def tiny_classifier_ckpt(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lightning checkpoint of a tiny classifier fitted for seconds on 768 real Fashion-MNIST images
    (3 epochs, batch 32); fitted once per test session, then reused."""
    ckpt = tmp_path_factory.getbasetemp() / "tiny_classifier.ckpt"
    if ckpt.is_file():
        return ckpt
    pl.seed_everything(0)
    datamodule = FashionMNISTDataModule(str(data_dir), batch_size=32, train_subset=768, val_subset=32)
    module = ClassifierModule(ClassifierNetwork(**TINY_NETWORK), partial(torch.optim.AdamW, lr=3e-3))
    module.check_data(datamodule)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(ckpt)
    return ckpt


@pytest.fixture(scope="module")
def ckpt(fmnist_dir, tmp_path_factory) -> Path:
    return tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def held_out(fmnist_dir) -> dict:
    """256 validation images (never trained on) as one batch {"image", "label"}."""
    datamodule = FashionMNISTDataModule(str(fmnist_dir), batch_size=256, val_subset=256)
    datamodule.setup()
    return next(iter(datamodule.val_dataloader()))


def test_network_shapes_and_config():
    net = ClassifierNetwork(in_channels=3, num_classes=7, resolution=16, **TINY_NETWORK)
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    assert net(x).shape == (5, 7)
    assert net.features(x).shape == (5, 16)
    rebuilt = ClassifierNetwork(**net.config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]


def test_network_rejects_widths_not_divisible_by_groups():
    with pytest.raises(ConfigError, match="classifier.widths"):
        ClassifierNetwork(widths=(12, 24), groups=8)


def test_augmentation_only_flips_and_shifts():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    flipped_or_not = random_shift_flip(x, max_shift=0)
    for original, out in zip(x, flipped_or_not, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(-1))
    shifted = random_shift_flip(x, max_shift=2)
    assert shifted.shape == x.shape
    # every output pixel is an input pixel of the same image (replicate padding adds no values)
    for original, out in zip(x, shifted, strict=True):
        assert set(out.unique().tolist()) <= set(original.unique().tolist())


def test_short_fit_on_real_data_beats_chance(ckpt, held_out):
    network = load_classifier(ckpt)
    with torch.no_grad():
        accuracy = (network(held_out["image"]).argmax(1) == held_out["label"]).float().mean().item()
    assert accuracy > 0.5, f"held-out accuracy {accuracy:.3f} after a short fit (chance is 0.1)"


def test_load_classifier_rebuilds_the_trained_network(ckpt):
    network = load_classifier(ckpt)
    assert not network.training and network.config == ClassifierNetwork(**TINY_NETWORK).config
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, saved[f"network.{name}"]), name


def test_load_classifier_refuses_other_checkpoints(ckpt, tmp_path):
    with pytest.raises(ConfigError, match=ckpt_key()):
        load_classifier(tmp_path / "missing.ckpt")
    checkpoint = torch.load(ckpt, weights_only=True)
    foreign = tmp_path / "autoencoder.ckpt"
    torch.save({"state_dict": checkpoint["state_dict"], "hyper_parameters": {"lr": 1.0}}, foreign)
    with pytest.raises(ConfigError, match=f"{ckpt_key()}.*no 'network'"):
        load_classifier(foreign)
    checkpoint["hyper_parameters"]["network"]["widths"] = [8, 16, 24]
    mismatched = tmp_path / "mismatched.ckpt"
    torch.save(checkpoint, mismatched)
    with pytest.raises(ConfigError, match=f"{ckpt_key()}.*do not match"):
        load_classifier(mismatched)


def test_check_data_names_the_mismatched_key(fmnist_dir):
    datamodule = FashionMNISTDataModule(str(fmnist_dir))
    optimizer = partial(torch.optim.AdamW, lr=1e-3)
    mismatches = {"in_channels": 3, "resolution": 28, "num_classes": 5}
    for name, value in mismatches.items():
        module = ClassifierModule(ClassifierNetwork(**TINY_NETWORK, **{name: value}), optimizer)
        with pytest.raises(ConfigError, match=f"classifier.{name}"):
            module.check_data(datamodule)
