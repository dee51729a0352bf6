"""LightningModule training the noisy-latent classifier p(y | z_t, t) used for classifier guidance.

z_0 = scale · E(x) from the frozen first stage, z_t ~ q(z_t | z_0) of the configured schedule,
t ~ U{0, …, T−1}; cross-entropy on the labels. Validation reports accuracy per t-bucket.
"""

from __future__ import annotations

import csv
import io
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ldmlab.checkpoints import FIRST_STAGE_CONFIG
from ldmlab.classifier.noisy_network import NoisyLatentClassifier
from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.optim.ema import EMA, EMAStep
from ldmlab.optim.optimizers import optimizer_and_schedule, trainer_precision
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.errors import FieldError, part_key
from ldmlab.utils.finite import LossWatch
from ldmlab.utils.latent_scale import fit_latent_scale
from ldmlab.utils.seeded import seeded_validation

CHECKPOINT_KEY = "noisy_classifier"  # the plain-data record that guidance checks compatibility with
BUCKET_CSV = "t_bucket_accuracy.csv"


def t_buckets(num_timesteps: int, count: int) -> list[tuple[int, int]]:
    """``count`` near-equal half-open ranges [lo, hi) covering {0, …, T−1}."""
    edges = [i * num_timesteps // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


class NoisyClassifierModule(EMAStep, pl.LightningModule):
    """Trains ``network`` on noisy latents of ``first_stage`` under ``schedule``.

    ``first_stage`` is an ``ldmlab.first_stage.autoencoder.FirstStage`` and ``schedule`` an
    ``ldmlab.diffusion.schedules`` ``NoiseSchedule``, injected by the config and used through their
    methods only: ``ldmlab.diffusion`` imports this package (classifier guidance), never the reverse.

    ``ema_decay`` (None: no EMA) keeps an EMA copy, updated in the optimiser step and used for
    validation and by ``load_noisy_classifier``. ``scheduler`` is an optional partial called as
    ``scheduler(optimizer, total_steps=...)`` and stepped every optimiser step. Validation is
    RNG-neutral: each batch is scored once per t-bucket (``val_t_buckets`` equal ranges of [0, T),
    t uniform inside) with a seed fixed per batch; logs ``val/acc``, ``val/loss`` (all buckets
    pooled) and ``val/acc_t<lo>_<hi>`` (t ∈ [lo, hi)), and rank 0 appends the per-bucket rows to
    ``<out_dir>/t_bucket_accuracy.csv``.
    """

    EMA_SOURCE = "network"

    def __init__(
        self,
        first_stage: nn.Module,
        schedule: nn.Module,
        network: NoisyLatentClassifier,
        optimizer: partial,
        resolution: PositiveInt,
        out_dir: str,
        scheduler: partial | None = None,
        ema_decay: float | None = 0.999,
        ema_warmup: NonNegativeInt = 10,
        scale_fit_batches: PositiveInt = 4,
        val_t_buckets: PositiveInt = 10,
    ) -> None:
        super().__init__()
        self.loss_watch = LossWatch("train/loss")
        if network.in_channels != first_stage.embed_dim:
            raise FieldError(
                "noisy_classifier", "in_channels", f"is {network.in_channels} but the first stage has "
                f"embed_dim={first_stage.embed_dim}", "leave it at ${first_stage_embed_dim}",
            )
        if not 1 <= val_t_buckets <= schedule.num_timesteps:
            raise FieldError("module", "val_t_buckets", f"must lie in [1, T={schedule.num_timesteps}], got "
                             f"{val_t_buckets}", "e.g. {key}=10")
        self.first_stage, self.schedule, self.network = first_stage, schedule, network
        self.ema = EMA(network, ema_decay, ema_warmup) if ema_decay is not None else None
        self.optimizer, self.scheduler = optimizer, scheduler
        self.resolution, self.out_dir, self.scale_fit_batches = resolution, Path(out_dir), scale_fit_batches
        self.buckets = t_buckets(schedule.num_timesteps, val_t_buckets)
        self.train_acc = MulticlassAccuracy(network.num_classes, average="micro")
        self.bucket_accuracy: dict[str, float] = {}
        self._val_stats: torch.Tensor | None = None  # (3, buckets): correct, count, summed loss

    @property
    def latent_shape(self) -> list[int]:
        """[C, h, w] of the scaled latents the network classifies."""
        size = self.resolution // self.first_stage.downsample_factor
        return [self.first_stage.embed_dim, size, size]

    def check_data(self, datamodule) -> None:
        """Fail before training unless the data's size and classes fit the first stage and network."""
        f, factor = self.first_stage.downsample_factor, self.network.downsample
        if datamodule.resolution != self.resolution or datamodule.resolution % (f * factor):
            raise FieldError(
                "data", "resolution", f"{datamodule.resolution} must equal "
                f"{part_key('module', 'resolution')}={self.resolution} "
                f"and be divisible by the first stage's f={f} × the classifier's downsampling {factor}",
                f"use a multiple of {f * factor}",
            )
        classes = getattr(datamodule, "num_classes", None)
        if classes != self.network.num_classes:
            raise FieldError("noisy_classifier", "num_classes", f"data has {classes} classes, the classifier "
                             f"{self.network.num_classes}", f"set {{key}}={classes}")

    def on_fit_start(self) -> None:
        """Fit the latent scale from real data once (all ranks pooled), as stage 2 does; resumed
        runs keep theirs."""
        fit_latent_scale(self)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        z0, y = self.first_stage.encode(batch["image"]), batch["label"]
        t = torch.randint(0, self.schedule.num_timesteps, (len(z0),), device=z0.device)
        logits = self.network(self.schedule.q_sample(z0, t, torch.randn_like(z0)), t)
        loss = F.cross_entropy(logits, y)
        self.loss_watch.observe(loss, self)
        self.log("train/loss", loss, prog_bar=True)
        self.train_acc(logits, y)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_stats = torch.zeros(3, len(self.buckets), device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score the batch once per t-bucket in one forward pass of (buckets × B) noisy latents."""
        network = self.ema.shadow if self.ema is not None else self.network
        with seeded_validation(self, batch_idx):
            z0, y = self.first_stage.encode(batch["image"]), batch["label"]
            t = torch.cat([torch.randint(lo, hi, (len(z0),), device=z0.device) for lo, hi in self.buckets])
            z = z0.repeat(len(self.buckets), 1, 1, 1)
            logits = network(self.schedule.q_sample(z, t, torch.randn_like(z)), t)
        labels = y.repeat(len(self.buckets))
        loss = F.cross_entropy(logits, labels, reduction="none").view(len(self.buckets), -1)
        correct = (logits.argmax(1) == labels).view(len(self.buckets), -1)
        count = torch.full_like(loss[:, 0], len(z0))
        self._val_stats += torch.stack([correct.sum(1).to(loss.dtype), count, loss.sum(1)])

    def on_validation_epoch_end(self) -> None:
        """Pool the bucket counts over ranks; log the accuracies; rank 0 appends the CSV rows."""
        correct, count, loss = self.trainer.strategy.reduce(self._val_stats, reduce_op="sum")
        if self.trainer.sanity_checking or not bool(count.sum() > 0):
            return
        accuracy = (correct / count).tolist()  # every bucket sees every batch: all counts equal
        names = [f"t{lo}_{hi}" for lo, hi in self.buckets]
        self.bucket_accuracy = dict(zip(names, accuracy, strict=True))
        pooled = {"val/acc": correct.sum() / count.sum(), "val/loss": loss.sum() / count.sum()}
        self.log_dict({k: float(v) for k, v in pooled.items()})  # floats: already pooled over ranks
        self.log_dict({f"val/acc_{name}": value for name, value in self.bucket_accuracy.items()})
        if self.trainer.is_global_zero:
            self._append_rows(accuracy, count.tolist())

    def _append_rows(self, accuracy: list[float], count: list[float]) -> None:
        """Rewritten whole, atomically: an interrupted epoch leaves the previous file intact."""
        path = self.out_dir / BUCKET_CSV
        path.parent.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        if path.is_file():
            with path.open(newline="") as file:
                text.write(file.read())
        writer = csv.writer(text)
        if not text.tell():
            writer.writerow(["epoch", "bucket", "t_lo", "t_hi", "accuracy", "count"])
        for index, ((lo, hi), acc, n) in enumerate(zip(self.buckets, accuracy, count, strict=True)):
            writer.writerow([self.current_epoch, index, lo, hi, f"{acc:.6f}", int(n)])
        write_file(path, lambda tmp: tmp.write_bytes(text.getvalue().encode()))

    def configure_optimizers(self):
        steps = int(self.trainer.estimated_stepping_batches)
        return optimizer_and_schedule(self.optimizer, self.network.parameters(), self.scheduler, steps,
                                      part_key("module", "optimizer"), trainer_precision(self))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store, as plain data, what guidance needs to rebuild the classifier and check that it fits
        the diffusion model: the first stage's architecture and fingerprint, latent shape and scale,
        and the schedule's ᾱ (T values)."""
        checkpoint[FIRST_STAGE_CONFIG] = self.first_stage.autoencoder_config
        checkpoint[CHECKPOINT_KEY] = {
            "network": dict(self.network.config),
            "num_classes": self.network.num_classes,
            "latent_shape": self.latent_shape,
            "scale_factor": float(self.first_stage.scale_factor),
            "first_stage_fingerprint": self.first_stage.fingerprint(),
            "alphas_cumprod": self.schedule.alphas_cumprod.double().cpu().tolist(),
        }

    def summary_extras(self) -> dict[str, Any]:
        """Final per-bucket validation accuracies, the latent scale and the first stage used."""
        return {"t_bucket_accuracy": self.bucket_accuracy,
                "scale_factor": float(self.first_stage.scale_factor),
                "first_stage_ckpt": self.first_stage.checkpoint_path}
