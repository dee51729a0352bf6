"""rFID of a stage-1 autoencoder: FID / KID of its reconstructions against the images themselves.

Every ``every_n_epochs`` validation epochs and after the last one, the first ``num_images``
images of ``split`` are reconstructed in eval mode (KL: the posterior mode; VQ: the quantised
code) and scored by a ``FidelityEvaluator`` whose reference set is those same real images, so the
reference features are extracted once and cached. Under DDP each rank reconstructs its share of
the chunks and rank 0 computes the metrics once (the numbers do not depend on the world size).

Logged as ``val/rfid_<network>`` and ``val/rkid_<network>`` (e.g. ``val/rfid_inception``), so
they land in ``summary.json`` with the other validation metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch

from ldmlab.callbacks.epoch_schedule import is_due
from ldmlab.config.types import PositiveInt
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.reference_stats import SPLITS, ReferenceSet, to_uint8
from ldmlab.utils.distributed import gather_chunks, on_rank_zero, rank_and_world
from ldmlab.utils.errors import ConfigError, FieldError, part_key

PART = "reconstruction_fid"  # errors name this callback's fields
REPORTED = ("fid_", "kid_")


class ReconstructionFID(pl.Callback):
    """metrics: ``FidelityEvaluator`` without its reference (a Hydra ``_partial_``); num_images:
    how many ``split`` images to reconstruct (more than the FID feature dimension)."""

    def __init__(
        self,
        metrics: Callable[..., FidelityEvaluator],
        num_images: PositiveInt = 1000,
        split: str = "val",
        every_n_epochs: PositiveInt = 1,
        batch_size: PositiveInt = 100,
    ) -> None:
        for key, value in (("num_images", num_images), ("every_n_epochs", every_n_epochs),
                           ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise FieldError(PART, key, f"must be an integer ≥ 1, got {value!r}", "e.g. {key}=100")
        self.metrics, self.num_images, self.split = metrics, num_images, split
        self.every_n_epochs, self.batch_size = every_n_epochs, batch_size
        self.evaluator: FidelityEvaluator | None = None
        self._scored_epoch = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The real images and the evaluator, checked before any training step."""
        if stage != "fit" or self.evaluator is not None:
            return
        if trainer.datamodule is None:
            raise ConfigError(part_key(PART), "needs a datamodule for its images",
                              "fit with datamodule=... or remove the callback")
        if self.split not in SPLITS:
            raise FieldError(PART, "split", f"unknown split {self.split!r}", f"use one of {SPLITS}")
        trainer.datamodule.setup("fit")
        available = len(getattr(trainer.datamodule, f"{self.split}_set"))
        if self.num_images > available:
            raise FieldError(PART, "num_images", f"{self.num_images} images asked, the {self.split} split "
                             f"has {available}", f"set {{key}} at most {available}")
        reference = ReferenceSet.from_datamodule(trainer.datamodule, self.split, self.num_images)
        # only FID / KID are reported, against these very images: no precision-recall, sFID, IS,
        # FD-DINOv2 or reference statistics from a file, whatever the metrics preset asks for
        self.evaluator = self.metrics(reference=reference, compute_precision_recall=False, sfid=False,
                                      inception_score=False, fd_dinov2=False, reference_stats=None)
        count_key = part_key(PART, "num_images")
        self.evaluator.check_counts(self.num_images, count_key, count_key)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or epoch == self._scored_epoch or not is_due(trainer, self.every_n_epochs):
            return
        self._scored_epoch = epoch
        reconstructions = self._reconstruct(pl_module)
        results = on_rank_zero(lambda: self.evaluator(reconstructions.float() / 127.5 - 1))
        for key, value in results.items():
            if key.startswith(REPORTED) and not key.endswith("_std"):
                pl_module.log(f"val/r{key}", float(value), sync_dist=True)

    @torch.no_grad()
    def _reconstruct(self, pl_module: pl.LightningModule) -> torch.Tensor | None:
        """uint8 (num_images, C, H, W) reconstructions on rank 0, None on the other ranks."""
        rank, world = rank_and_world()
        images = self.evaluator.reference.images
        local = {}
        for index in range(rank, math.ceil(len(images) / self.batch_size), world):
            chunk = images[index * self.batch_size : (index + 1) * self.batch_size]
            x = (chunk.float() / 127.5 - 1).to(pl_module.device)
            local[index] = to_uint8(pl_module.reconstruct(x).cpu())
        return gather_chunks(local)
