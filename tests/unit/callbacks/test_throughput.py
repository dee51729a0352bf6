"""DenoiserThroughput on a tiny real fit: one start line, windowed timing, summary figures."""

from __future__ import annotations

import csv
import logging
import math
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from ldmlab.backbones.flops import forward_flops_per_image
from ldmlab.callbacks import throughput
from ldmlab.callbacks.throughput import DenoiserThroughput
from tests.unit.backbones.test_unet import tiny_unet

BATCH, BATCHES, EPOCHS, WINDOW = 2, 10, 2, 4


class TinyDiffusion(pl.LightningModule):
    """What the callback reads of LatentDiffusionModule: model["backbone"], resolution, first_stage."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.ModuleDict({"backbone": tiny_unet()})
        self.resolution, self.first_stage = 16, SimpleNamespace(downsample_factor=2)

    def _loss(self, batch):
        x = batch["image"][:, :, ::2, ::2]
        return self.model["backbone"](x, torch.zeros(len(x), dtype=torch.long)).square().mean()

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def test_fit_logs_one_line_windows_and_summary(tmp_path, caplog, monkeypatch):
    syncs = []
    monkeypatch.setattr(throughput, "_sync", lambda trainer: syncs.append(trainer.global_step))
    images = [{"image": torch.randn(3, 16, 16)} for _ in range(BATCH * BATCHES)]
    module, callback = TinyDiffusion(), DenoiserThroughput(window=WINDOW)
    trainer = pl.Trainer(max_epochs=EPOCHS, limit_val_batches=1, num_sanity_val_steps=1, callbacks=[callback],
                         logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    with caplog.at_level(logging.INFO, logger=throughput.__name__):
        trainer.fit(module, DataLoader(images, batch_size=BATCH),
                    DataLoader(images[:BATCH], batch_size=BATCH))

    net = module.model["backbone"]
    flops = forward_flops_per_image(net, 8)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("denoiser:")]
    assert lines == [f"denoiser: {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters, "
                     f"{flops / 1e9:.3g} GFLOP per image (forward; FLOPs = 2 × MACs)"]
    # per epoch: 1 warm-up batch, windows closing after 4 + 4 batches, the last 1 closed by validation
    assert len(syncs) == EPOCHS * 4
    assert callback._timed_images == EPOCHS * (BATCHES - 1) * BATCH
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = [r for r in csv.DictReader(file) if r.get("train/img_per_s")]
    assert len(rows) == EPOCHS * 3
    assert "train/mfu" not in rows[0] or not rows[0]["train/mfu"]  # CPU: no known peak

    summary = callback.summary_extras()["denoiser"]
    assert summary["parameters"] == sum(p.numel() for p in net.parameters())
    assert summary["forward_flops_per_image"] == flops > 0
    assert summary["flop_convention"].startswith("FLOPs = 2 × MACs")
    assert 0 < summary["img_per_s"] < math.inf
    assert math.isclose(summary["tflops_per_s"], 3 * flops * summary["img_per_s"] / 1e12)
    assert summary["mfu"] is None


def test_mfu_divides_by_the_peak_of_every_device():
    callback = DenoiserThroughput()
    callback.forward_flops, callback.peak_flops, callback.world_size = 10**9, 10**12, 2
    rates = callback._rates(images=200, seconds=2.0)
    assert rates["img_per_s"] == 100
    assert math.isclose(rates["tflops_per_s"], 0.3)
    assert math.isclose(rates["mfu"], 0.3e12 / 2e12)


def test_summary_is_empty_before_fit():
    assert DenoiserThroughput().summary_extras() == {}
