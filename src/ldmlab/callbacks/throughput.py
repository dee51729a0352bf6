"""Training throughput of the denoiser: images/s, achieved TFLOP/s, MFU, and the data-wait share.

At fit start the denoiser's forward FLOPs per image (the training path) are counted on the meta
device (``ldmlab.backbones.flops``; FLOPs = 2 × multiply-adds) and one line is logged. Training then
costs ≈ 3 × forward per image, so achieved FLOP/s = 3 × forward FLOPs × img/s; MFU divides that by
the devices' peak for the trainer's compute dtype (``ldmlab.utils.device_peak``: ldmlab's dense
datasheet table for GPUs, else Lightning's ``get_available_flops``; on CPUs a matmul rate measured
once at fit start). Only the denoiser's FLOPs count: encoding the batch and the conditioner take
time but add none, so they lower the MFU.

Wall time is read over windows of ``window`` training batches (default the trainer's
``log_every_n_steps``), with one device sync per window and none per step: Lightning's own
``ThroughputMonitor`` syncs every step and needs ``flops_per_batch`` on the module. The first
batch after fit start and after each validation is warm-up and not timed; validation is not
timed. Rank 0 times its own batches and counts every rank alike (img/s × world size).

Data wait: the host time from this callback's ``on_train_batch_end`` to the next
``on_train_batch_start``, where Lightning fetches the next batch and moves it to the device; the
rest of the window is compute. The gap also holds Lightning's step logging and the batch-end
work of the callbacks after this one (a checkpoint saved every n steps), so it bounds the wait
from above; on an accelerator the device may still be running queued work meanwhile.

Logged at each window's end: ``train/img_per_s``, ``train/tflops_per_s``, ``train/mfu`` (where
the peak is known), ``train/data_wait_frac``, ``train/data_wait_ms`` and ``train/compute_ms``
(per step). ``summary_extras()`` gives the whole run's figures and the peak used for ``summary.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks.throughput_monitor import _plugin_to_compute_dtype

from ldmlab.backbones.flops import forward_flops_per_image, train_flops_per_image
from ldmlab.config.types import PositiveInt
from ldmlab.utils.device_peak import DevicePeak, device_peak

log = logging.getLogger(__name__)

FLOP_CONVENTION = "FLOPs = 2 × MACs; training = 3 × forward"
RATES = ("img_per_s", "tflops_per_s", "mfu", "data_wait_frac", "data_wait_ms", "compute_ms")


@dataclass
class Tally:
    """Timed batches: wall seconds, of which ``wait_s`` waiting for data, and images (all ranks)."""

    seconds: float = 0.0
    wait_s: float = 0.0
    batches: int = 0
    images: int = 0

    def add(self, other: Tally) -> None:
        self.seconds += other.seconds
        self.wait_s += other.wait_s
        self.batches += other.batches
        self.images += other.images


class DenoiserThroughput(pl.Callback):
    """Counts the denoiser's FLOPs at setup (before a strategy shards or wraps it) and times training
    in windows of ``window`` batches; ``context_length``: the cross-attention tokens the FLOP count
    assumes."""

    def __init__(self, window: PositiveInt | None = None, context_length: PositiveInt = 1) -> None:
        self.window, self.context_length = window, context_length
        self.num_parameters: int | None = None
        self.forward_flops: int | None = None
        self.peak = DevicePeak(None, None, "")  # per device
        self.world_size = 1
        self._start: float | None = None  # perf_counter at the open window's start; None: not timing
        self._batch_end: float | None = None  # perf_counter at the last timed batch's end
        self._open = Tally()  # the open window, this rank's images
        self.total = Tally()  # closed windows, all ranks' images

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The FLOP count, on the module as built (FSDP's flat shards have other shapes)."""
        if stage != "fit":
            return
        net = pl_module.model["backbone"]
        side = pl_module.resolution // pl_module.first_stage.downsample_factor
        self.num_parameters = sum(p.numel() for p in net.parameters())
        self.forward_flops = forward_flops_per_image(net, side, self.context_length, training=True)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dtype = _plugin_to_compute_dtype(trainer.precision_plugin)
        self.peak = device_peak(trainer.strategy.root_device, dtype)
        self.world_size = trainer.world_size
        self.window = self.window or trainer.log_every_n_steps
        if trainer.is_global_zero:
            log.info("denoiser: %.2fM parameters, %.3g GFLOP per image (forward; FLOPs = 2 × MACs)",
                     self.num_parameters / 1e6, self.forward_flops / 1e9)
            if self.peak.flops:
                log.info("peak %.3g TFLOP/s per device (%s: %s)", self.peak.flops / 1e12, self.peak.source,
                         self.peak.device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.is_global_zero and self._batch_end is not None:
            self._open.wait_s += time.perf_counter() - self._batch_end

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: dict[str, Any], batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        if self._start is None:  # warm-up batch: start timing after it
            _sync(trainer)
            self._start = self._batch_end = time.perf_counter()
            return
        self._open.images += len(batch["latent" if "latent" in batch else "image"])
        self._open.batches += 1
        if self._open.batches >= self.window:
            self._close_window(trainer)
            self._start = self._batch_end = time.perf_counter()
        else:
            self._batch_end = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and self._start is not None:
            self._close_window(trainer)
            self._start = self._batch_end = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self._start is not None:
            self._close_window(trainer)
            self._start = self._batch_end = None

    def _close_window(self, trainer: pl.Trainer) -> None:
        """Sync once, log the open window's rates and add it to the run's totals."""
        window, self._open = self._open, Tally()
        if not window.batches:
            return
        _sync(trainer)
        window.seconds = time.perf_counter() - self._start
        window.images *= self.world_size
        self.total.add(window)
        metrics = {f"train/{k}": v for k, v in self.rates(window).items() if v is not None}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def rates(self, tally: Tally) -> dict[str, float | None]:
        """img/s, TFLOP/s, MFU (None: peak unknown), the data-wait fraction of the wall time, and
        ms per step waiting for data and computing (the rest)."""
        img_per_s = tally.images / tally.seconds
        flops_per_s = train_flops_per_image(self.forward_flops) * img_per_s
        peak = self.peak.flops
        return {"img_per_s": img_per_s, "tflops_per_s": flops_per_s / 1e12,
                "mfu": flops_per_s / (peak * self.world_size) if peak else None,
                "data_wait_frac": tally.wait_s / tally.seconds,
                "data_wait_ms": 1e3 * tally.wait_s / tally.batches,
                "compute_ms": 1e3 * (tally.seconds - tally.wait_s) / tally.batches}

    def summary_extras(self) -> dict[str, Any]:
        if self.forward_flops is None:  # never fitted
            return {}
        rates = self.rates(self.total) if self.total.batches else dict.fromkeys(RATES)
        peak = {"peak_tflops_per_s": self.peak.flops and self.peak.flops / 1e12,
                "peak_source": self.peak.source, "peak_device": self.peak.device}
        return {"denoiser": {"parameters": self.num_parameters, "forward_flops_per_image": self.forward_flops,
                             "flop_convention": FLOP_CONVENTION, **rates, **peak,
                             "timed_steps": self.total.batches}}


def _sync(trainer: pl.Trainer) -> None:
    """Wait for the device's queued work, so the host clock times it."""
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)
