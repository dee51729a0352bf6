"""The familiar Lightning Trainer knobs compose without `+` and reach the Trainer; checkpoint
callbacks: the monitored one stays ``trainer.checkpoint_callback``, one owns last.ckpt."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from ldmlab.callbacks.last_checkpoint import LastCheckpoint
from tests.conftest import compose_config

KNOBS = {  # override → (Trainer attribute, expected value)
    "max_steps=7": ("max_steps", 7),
    "limit_val_batches=3": ("limit_val_batches", 3),
    "limit_test_batches=0.5": ("limit_test_batches", 0.5),
    "val_check_interval=5": ("val_check_interval", 5),
    "accumulate_grad_batches=4": ("accumulate_grad_batches", 4),
    "gradient_clip_val=0.5": ("gradient_clip_val", 0.5),
    "gradient_clip_algorithm=value": ("gradient_clip_algorithm", "value"),
    "overfit_batches=2": ("overfit_batches", 2),
    "min_epochs=2": ("min_epochs", 2),
    "reload_dataloaders_every_n_epochs=2": ("reload_dataloaders_every_n_epochs", 2),
    "detect_anomaly=true": ("_detect_anomaly", True),
}


@pytest.mark.parametrize("override", list(KNOBS))
def test_trainer_knob_composes_and_reaches_the_trainer(override):
    overrides = [f"trainer.{override}", "trainer.accelerator=cpu", "paths.output_dir=/tmp/x", "logger=none"]
    cfg = compose_config("train_classifier", overrides)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
    attribute, expected = KNOBS[override]
    assert getattr(trainer, attribute) == expected


def test_lightning_defaults_are_kept():
    cfg = compose_config("train_ae", ["logger=none"])
    assert cfg.trainer.max_steps == -1 and cfg.trainer.accumulate_grad_batches == 1
    assert cfg.trainer.gradient_clip_val is None, "stage 1 clips itself (manual optimisation)"
    assert compose_config("train_ldm", ["logger=none"]).trainer.gradient_clip_val == 1.0
    for name in ("default", "cpu", "gpu", "ddp", "ddp_cpu"):
        assert compose_config("train_ae", [f"trainer={name}"]).trainer.use_distributed_sampler is False


@pytest.mark.parametrize(("config", "monitor"), [("train_ae", "val/lpips"), ("train_ldm", "val/loss"),
                                                 ("train_classifier", "val/acc"),
                                                 ("train_noisy_classifier", "val/acc")])
def test_monitored_checkpoint_is_the_trainers_and_last_ckpt_has_one_owner(config, monitor):
    cfg = compose_config(config, ["logger=none", "trainer.accelerator=cpu", "paths.output_dir=/tmp/x"])
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c]
    trainer = instantiate(cfg.trainer, logger=False, callbacks=callbacks, precision="32-true")
    assert trainer.checkpoint_callback.monitor == monitor
    owners = [c for c in trainer.checkpoint_callbacks if c.save_last]
    assert len(owners) == 1 and isinstance(owners[0], LastCheckpoint)
    assert owners[0].every_n == cfg.callbacks.last_checkpoint.every_n_train_steps > 0
