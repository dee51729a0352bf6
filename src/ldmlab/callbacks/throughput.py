"""Training throughput of the denoiser: images/s, achieved TFLOP/s and MFU.

At fit start the denoiser's forward FLOPs per image are counted on the meta device
(``ldmlab.backbones.flops``; FLOPs = 2 × multiply-adds) and one line is logged. Training then
costs ≈ 3 × forward per image, so achieved FLOP/s = 3 × forward FLOPs × img/s; MFU divides that by
the devices' peak (``get_available_flops`` for the trainer's compute dtype; None where the device
is not in Lightning's table, e.g. CPUs). Only the denoiser's FLOPs count: encoding the batch and
the conditioner take time but add none, so they lower the MFU.

Wall time is read over windows of ``window`` training batches (default the trainer's
``log_every_n_steps``), with one device sync per window and none per step: Lightning's own
``ThroughputMonitor`` syncs every step and needs ``flops_per_batch`` on the module. The first
batch after fit start and after each validation is warm-up and not timed; validation is not
timed. Rank 0 times its own batches and counts every rank alike (img/s × world size).

Logged at each window's end: ``train/img_per_s``, ``train/tflops_per_s`` and ``train/mfu``
(where the peak is known). ``summary_extras()`` gives the whole run's figures for ``summary.json``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.throughput import get_available_flops
from pytorch_lightning.callbacks.throughput_monitor import _plugin_to_compute_dtype

from ldmlab.backbones.flops import forward_flops_per_image, train_flops_per_image
from ldmlab.config.types import PositiveInt

log = logging.getLogger(__name__)

FLOP_CONVENTION = "FLOPs = 2 × MACs; training = 3 × forward"


class DenoiserThroughput(pl.Callback):
    """Counts the denoiser's FLOPs at fit start and times training in windows of ``window`` batches;
    ``context_length``: the cross-attention tokens the FLOP count assumes."""

    def __init__(self, window: PositiveInt | None = None, context_length: PositiveInt = 1) -> None:
        self.window, self.context_length = window, context_length
        self.num_parameters: int | None = None
        self.forward_flops: int | None = None
        self.peak_flops: int | None = None  # per device
        self.world_size = 1
        self._start: float | None = None  # perf_counter at the open window's start; None: not timing
        self._images = self._batches = 0  # in the open window, this rank
        self._timed_s, self._timed_images = 0.0, 0  # closed windows, all ranks

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = pl_module.model["backbone"]
        side = pl_module.resolution // pl_module.first_stage.downsample_factor
        self.num_parameters = sum(p.numel() for p in net.parameters())
        self.forward_flops = forward_flops_per_image(net, side, self.context_length)
        dtype = _plugin_to_compute_dtype(trainer.precision_plugin)
        self.peak_flops = get_available_flops(trainer.strategy.root_device, dtype)
        self.world_size = trainer.world_size
        self.window = self.window or trainer.log_every_n_steps
        if trainer.is_global_zero:
            log.info("denoiser: %.2fM parameters, %.3g GFLOP per image (forward; FLOPs = 2 × MACs)",
                     self.num_parameters / 1e6, self.forward_flops / 1e9)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: dict[str, Any], batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        if self._start is None:  # warm-up batch: start timing after it
            _sync(trainer)
            self._start = time.perf_counter()
            return
        self._images += len(batch["image"])
        self._batches += 1
        if self._batches >= self.window:
            self._close_window(trainer)
            self._start = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and self._start is not None:
            self._close_window(trainer)
            self._start = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self._start is not None:
            self._close_window(trainer)
            self._start = None

    def _close_window(self, trainer: pl.Trainer) -> None:
        """Sync once, log the open window's rates and add it to the run's totals."""
        if not self._batches:
            return
        _sync(trainer)
        seconds = time.perf_counter() - self._start
        images = self._images * self.world_size
        self._timed_s, self._timed_images = self._timed_s + seconds, self._timed_images + images
        self._images = self._batches = 0
        metrics = {f"train/{k}": v for k, v in self._rates(images, seconds).items() if v is not None}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def _rates(self, images: int, seconds: float) -> dict[str, float | None]:
        img_per_s = images / seconds
        flops_per_s = train_flops_per_image(self.forward_flops) * img_per_s
        mfu = flops_per_s / (self.peak_flops * self.world_size) if self.peak_flops else None
        return {"img_per_s": img_per_s, "tflops_per_s": flops_per_s / 1e12, "mfu": mfu}

    def summary_extras(self) -> dict[str, Any]:
        if self.forward_flops is None:  # never fitted
            return {}
        rates = (self._rates(self._timed_images, self._timed_s) if self._timed_s > 0
                 else dict.fromkeys(("img_per_s", "tflops_per_s", "mfu")))
        return {"denoiser": {"parameters": self.num_parameters, "forward_flops_per_image": self.forward_flops,
                             "flop_convention": FLOP_CONVENTION, **rates}}


def _sync(trainer: pl.Trainer) -> None:
    """Wait for the device's queued work, so the host clock times it."""
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)
