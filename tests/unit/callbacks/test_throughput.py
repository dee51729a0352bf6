"""DenoiserThroughput on a tiny real fit (one start line, windowed timing, summary figures) and on a
fake clock (the data-wait / compute split of each window)."""

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
from ldmlab.callbacks.throughput import DenoiserThroughput, Tally
from ldmlab.utils.device_peak import DevicePeak
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
    flops = forward_flops_per_image(net, 8, training=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("denoiser:")]
    assert lines == [f"denoiser: {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters, "
                     f"{flops / 1e9:.3g} GFLOP per image (forward; FLOPs = 2 × MACs)"]
    # per epoch: 1 warm-up batch, windows closing after 4 + 4 batches, the last 1 closed by validation
    assert len(syncs) == EPOCHS * 4
    assert callback.total.images == EPOCHS * (BATCHES - 1) * BATCH
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = [r for r in csv.DictReader(file) if r.get("train/img_per_s")]
    assert len(rows) == EPOCHS * 3
    assert all(float(r["train/mfu"]) > 0 and 0 <= float(r["train/data_wait_frac"]) < 1 for r in rows)

    summary = callback.summary_extras()["denoiser"]
    assert summary["parameters"] == sum(p.numel() for p in net.parameters())
    assert summary["forward_flops_per_image"] == flops > 0
    assert summary["flop_convention"].startswith("FLOPs = 2 × MACs")
    assert 0 < summary["img_per_s"] < math.inf
    assert math.isclose(summary["tflops_per_s"], 3 * flops * summary["img_per_s"] / 1e12)
    # CPU: the peak is a matmul rate measured at fit start
    assert summary["peak_source"] == "measured" and summary["peak_device"].startswith("cpu (")
    assert math.isclose(summary["mfu"], summary["tflops_per_s"] / summary["peak_tflops_per_s"])
    assert summary["timed_steps"] == EPOCHS * (BATCHES - 1)
    assert 0 <= summary["data_wait_frac"] < 1
    assert math.isclose(summary["data_wait_ms"] + summary["compute_ms"], 1e3 / summary["img_per_s"] * BATCH)


def test_mfu_divides_by_the_peak_of_every_device():
    callback = DenoiserThroughput()
    callback.forward_flops, callback.peak, callback.world_size = 10**9, DevicePeak(1e12, "table", "x"), 2
    rates = callback.rates(Tally(seconds=2.0, wait_s=0.5, batches=4, images=200))
    assert rates["img_per_s"] == 100
    assert math.isclose(rates["tflops_per_s"], 0.3)
    assert math.isclose(rates["mfu"], 0.3e12 / 2e12)
    assert (rates["data_wait_frac"], rates["data_wait_ms"], rates["compute_ms"]) == (0.25, 125.0, 375.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fake_clock_splits_each_window_into_data_wait_and_compute(monkeypatch):
    """Batches of 4 images, windows of 2; times are exact binary fractions, so the rates are exact."""
    clock, logged = FakeClock(), []
    monkeypatch.setattr(throughput, "time", SimpleNamespace(perf_counter=clock))
    logger = SimpleNamespace(log_metrics=lambda metrics, step: logged.append(metrics))
    trainer = SimpleNamespace(is_global_zero=True, sanity_checking=False, loggers=[logger], global_step=0,
                              strategy=SimpleNamespace(root_device=torch.device("cpu")))
    callback = DenoiserThroughput(window=2)
    callback.forward_flops, callback.peak = 10**9, DevicePeak(1e12, "measured", "cpu")
    batch = {"image": torch.zeros(4, 1, 2, 2)}

    def step(wait: float, compute: float) -> None:
        clock.now += wait  # Lightning fetches the batch
        callback.on_train_batch_start(trainer, None, batch, 0)
        clock.now += compute
        callback.on_train_batch_end(trainer, None, None, batch, 0)

    step(4.0, 8.0)  # warm-up: neither counted
    step(0.125, 0.5)
    step(0.125, 0.25)  # window 1 closes: 1 s, 0.25 s of it waiting
    step(0.25, 0.5)
    clock.now += 0.25  # logging after the batch, then validation closes window 2 (1 batch)
    callback.on_validation_start(trainer, None)
    clock.now += 16.0  # validation: not timed
    step(2.0, 2.0)  # warm-up again: its wait is not counted either
    step(0.5, 0.5)
    callback.on_train_end(trainer, None)  # closes window 3

    rates = [{k.removeprefix("train/"): m[k] for k in ("train/img_per_s", "train/data_wait_frac",
                                                        "train/data_wait_ms", "train/compute_ms")}
             for m in logged]
    assert rates == [
        {"img_per_s": 8.0, "data_wait_frac": 0.25, "data_wait_ms": 125.0, "compute_ms": 375.0},
        {"img_per_s": 4.0, "data_wait_frac": 0.25, "data_wait_ms": 250.0, "compute_ms": 750.0},
        {"img_per_s": 4.0, "data_wait_frac": 0.5, "data_wait_ms": 500.0, "compute_ms": 500.0},
    ]
    assert math.isclose(logged[0]["train/mfu"], 3 * 10**9 * 8 / 1e12)
    summary = callback.summary_extras()["denoiser"]
    assert summary["timed_steps"] == 4 and summary["img_per_s"] == 16 / 3
    assert summary["data_wait_frac"] == 1 / 3 and summary["data_wait_ms"] == 250.0
    assert summary["compute_ms"] == 500.0
    assert (summary["peak_tflops_per_s"], summary["peak_source"]) == (1.0, "measured")


def test_summary_is_empty_before_fit():
    assert DenoiserThroughput().summary_extras() == {}
