"""Stage 2 given a stage-1 run (``first_stage.ckpt`` unset: ``logs/train_ae/latest``) loads the run's
best checkpoint by its monitored metric, which its summary.json names, end to end through ``main``.

A callback of this file whites out the decoder after the first epoch (its last conv: weight 0, bias
1: every reconstruction is a white image), so the first of two validations is the best and differs
from ``last.ckpt``: a run that loaded last would show. The monitor is val/psnr (mode max): a white
image is far from Fashion-MNIST's black backgrounds in PSNR, while the tiny run's first
reconstructions are no better than a white image by LPIPS (0.736 vs 0.676)."""

from __future__ import annotations

import csv
import json

import pytorch_lightning as pl
import torch

from ldmlab.autoencoder.prior import VAEPrior
from tests.conftest import TINY_LDM, run_forked
from tests.integration.test_train_ae_cli import NO_RFID, TINY

BIAS = "autoencoder.decoder.conv_out.bias"
MONITOR = "val/psnr"


class WhiteOutAfterFirstEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            with torch.no_grad():
                conv = pl_module.autoencoder.decoder.conv_out
                conv.weight.zero_()
                conv.bias.fill_(1.0)


def validations(run) -> list[tuple[int, float]]:
    """(epoch, val/psnr) of each validation, from the run's metrics.csv."""
    with open(run / "csv" / "metrics.csv") as file:
        return [(int(r["epoch"]), float(r[MONITOR])) for r in csv.DictReader(file) if r[MONITOR]]


def test_stage_2_loads_the_best_stage_1_checkpoint_by_the_monitored_metric(tmp_path, fmnist_dir):
    ae_args = [*TINY, NO_RFID, "logger=csv", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
               "trainer.limit_val_batches=1", "callbacks.image_logger=null",
               f"callbacks.model_checkpoint.monitor={MONITOR}", "callbacks.model_checkpoint.mode=max",
               f"+callbacks.white_out._target_={__name__}.WhiteOutAfterFirstEpoch"]
    out = run_forked("ldmlab.commands.train", ae_args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "train_ae" / "latest").resolve()
    checkpoints = json.loads((run / "summary.json").read_text())["checkpoints"]
    scores = validations(run)
    epoch, highest = max(scores, key=lambda row: row[1])
    assert [e for e, _ in scores] == [0, 1] and epoch == 0, scores  # the white-out made the first the best
    selected = run / checkpoints["selected"]
    assert checkpoints["selected"] == checkpoints["best"] != checkpoints["last"]
    assert checkpoints["selected_by"] == MONITOR and checkpoints["selected_score"] == highest
    best, last = (torch.load(path, weights_only=True) for path in (selected, run / checkpoints["last"]))
    assert (best["epoch"], best["global_step"]) == (epoch, checkpoints["selected_step"])
    assert float(last["state_dict"][BIAS].min()) > 0.99 > float(best["state_dict"][BIAS].max())  # whited out

    ldm_args = [*TINY_LDM, "logger=none", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                "callbacks.image_logger=null", "module.scale_fit_batches=1"]
    out = run_forked("ldmlab.commands.train", ldm_args, tmp_path, config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    ldm_run = (tmp_path / "train_ldm" / "latest").resolve()
    assert json.loads((ldm_run / "summary.json").read_text())["first_stage_ckpt"] == str(selected)
    (log,) = ldm_run.glob("*.log")  # the run's own log says which file and why
    assert f"first_stage.ckpt unset, {tmp_path / 'train_ae' / 'latest'}: loading {selected} (its best by " \
           f"{MONITOR}: {highest} at step {checkpoints['selected_step']})" in log.read_text()
    state = torch.load(ldm_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(state[f"first_stage.{BIAS}"], best["state_dict"][BIAS])
    # a stage-1 run dir as the hybrids' generator follows the same rule
    prior = VAEPrior(str(tmp_path / "train_ae" / "latest"), 32, 1)
    assert torch.equal(prior.autoencoder.decoder.conv_out.bias, best["state_dict"][BIAS])
