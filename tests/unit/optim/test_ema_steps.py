"""EMA: the warm-up decay in closed form, and one update per optimiser step in training."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from ldmlab.optim.ema import EMA
from tests.conftest import TINY_LDM, compose_config


@pytest.mark.parametrize(("decay", "warmup"), [(0.9, 10), (0.999, 10), (0.5, 1)])
def test_warmup_decay_and_average_in_closed_form(decay, warmup):
    """Shadow 0, model 1: after k updates the shadow is 1 − Π_{n<k} d_n with
    d_n = min(decay, (1 + n) / (warmup + n))."""
    model = nn.Linear(4, 4)
    nn.init.ones_(model.weight), nn.init.ones_(model.bias)
    ema = EMA(model, decay=decay, warmup=warmup)
    nn.init.zeros_(ema.shadow.weight), nn.init.zeros_(ema.shadow.bias)
    remaining = 1.0
    for n in range(30):
        expected = min(decay, (1 + n) / (warmup + n))
        assert ema.current_decay().item() == pytest.approx(expected, rel=1e-6)
        ema.update(model)
        remaining *= expected
        torch.testing.assert_close(ema.shadow.weight, torch.full((4, 4), 1 - remaining), rtol=0, atol=1e-6)
    assert int(ema.num_updates) == 30


def test_ema_updates_once_per_optimiser_step_under_accumulation(tiny_ae_ckpt):
    cfg = compose_config("train_ldm", [f"first_stage.ckpt={tiny_ae_ckpt}", *TINY_LDM, "logger=none"])
    module, datamodule = instantiate(cfg.module), instantiate(cfg.data)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, accumulate_grad_batches=2, limit_val_batches=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2
    assert int(module.ema.num_updates) == 2
