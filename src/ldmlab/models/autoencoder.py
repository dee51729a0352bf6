"""LightningModule for stage 1: wires an Autoencoder, its loss and two optimisers together."""

from __future__ import annotations

from functools import partial

import pytorch_lightning as pl
import torch

from ldmlab.autoencoder.loss import AutoencoderLoss
from ldmlab.autoencoder.model import Autoencoder
from ldmlab.config.types import NonNegativeFloat, NonNegativeInt
from ldmlab.metrics.reconstruction import ReconstructionMetrics
from ldmlab.optim.lr_schedules import linear_warmup, warmup_cosine
from ldmlab.optim.optimizers import build_optimizer, trainer_precision
from ldmlab.utils.errors import FieldError, part_key
from ldmlab.utils.finite import ensure_finite

LR_DECAYS = ("constant", "cosine")


class AutoencoderModule(pl.LightningModule):
    """Manual optimisation: one autoencoder step (with LR warm-up and gradient clipping) then,
    from ``loss.disc_start`` on, one discriminator step per batch. ``train_step`` is a saved
    buffer so warm-up and discriminator start resume exactly.

    lr_decay: "constant" after warm-up, or "cosine": the autoencoder's LR follows a half cosine
    down to ``final_lr_ratio`` × LR at the trainer's last step (the discriminator's stays constant).
    """

    optimizer_fields = ("optimizer", "disc_optimizer")  # per optimiser, for error messages
    # DDP: the discriminator idles before loss.disc_start (`trainer=ddp` turns Lightning's
    # find_unused_parameters on for this module only; see ldmlab.commands.train.ddp_strategy)
    ddp_find_unused_parameters = True

    def __init__(
        self,
        autoencoder: Autoencoder,
        loss: AutoencoderLoss,
        optimizer: partial,
        disc_optimizer: partial,
        warmup_steps: NonNegativeInt = 0,
        gradient_clip_val: NonNegativeFloat | None = 1.0,  # < 0 would flip the gradients
        lr_decay: str = "constant",
        final_lr_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if lr_decay not in LR_DECAYS:
            raise FieldError("module", "lr_decay", f"unknown {lr_decay!r}", f"use one of {LR_DECAYS}")
        if not 0 <= final_lr_ratio <= 1:
            raise FieldError("module", "final_lr_ratio", f"must be in [0, 1], got {final_lr_ratio}",
                             "e.g. {key}=0.1")
        self.lr_decay, self.final_lr_ratio = lr_decay, final_lr_ratio
        self.automatic_optimization = False
        self.autoencoder, self.loss = autoencoder, loss
        self.optimizer, self.disc_optimizer = optimizer, disc_optimizer
        self.warmup_steps, self.gradient_clip_val = warmup_steps, gradient_clip_val
        self.metrics = ReconstructionMetrics(loss.lpips)
        self.register_buffer("train_step", torch.zeros((), dtype=torch.long))

    def check_data(self, datamodule) -> None:
        """Fail before training if the data cannot pass through the autoencoder."""
        f = self.autoencoder.downsample_factor
        if datamodule.resolution % f:
            raise FieldError(
                "data", "resolution", f"{datamodule.resolution} is not divisible by the autoencoder's "
                f"downsampling factor f={f} (from {part_key('autoencoder', 'encoder.ch_mult')})",
                f"use a multiple of {f}, e.g. {{key}}={max(f, datamodule.resolution // f * f)}",
            )
        if datamodule.channels != self.autoencoder.in_channels:
            raise FieldError(
                "data", "channels", f"data has {datamodule.channels} channels, the autoencoder expects "
                f"{self.autoencoder.in_channels}",
                f"{part_key('autoencoder', 'encoder.in_channels')}={datamodule.channels} "
                "(the default follows {key})",
            )

    def _images(self, batch: dict) -> torch.Tensor:
        x = batch["image"]
        if x.shape[1] != self.autoencoder.in_channels:
            raise FieldError(
                "data", "channels", f"batch has {x.shape[1]} channels, the autoencoder expects "
                f"{self.autoencoder.in_channels}",
                f"{part_key('autoencoder', 'encoder.in_channels')}={x.shape[1]}",
            )
        return x

    def training_step(self, batch: dict, batch_idx: int) -> None:
        x, step = self._images(batch), int(self.train_step)
        opt_ae, opt_d = self.optimizers()
        sched_ae, sched_d = self.lr_schedulers()

        self.toggle_optimizer(opt_ae)
        x_rec, reg = self.autoencoder(x)
        loss, log = self.loss.generator_step(x, x_rec, reg, step, self.autoencoder.last_layer)
        ensure_finite(loss, "train/total", step, self, (opt_ae, opt_d))
        self._step(loss, opt_ae, sched_ae)

        d_loss, d_log = self.loss.discriminator_step(x, x_rec, step)
        if d_log:
            ensure_finite(d_loss, "train/d_loss", step, self, (opt_ae, opt_d))
            self.toggle_optimizer(opt_d)
            self._step(d_loss, opt_d, sched_d)
        self.train_step += 1
        rec_loss = log.pop("rec_loss")
        self.log_dict({f"train/{k}": v for k, v in (log | d_log).items()})
        self.log("train/rec_loss", rec_loss, prog_bar=True)

    def _step(self, loss: torch.Tensor, optimizer, scheduler) -> None:
        """Backward ``loss`` into the toggled ``optimizer``'s parameters, clip their gradient norm,
        step ``optimizer`` and ``scheduler``, then untoggle."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(optimizer, self.gradient_clip_val, "norm")
        optimizer.step()
        scheduler.step()
        self.untoggle_optimizer(optimizer)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x = self._images(batch)
        x_rec, reg = self.autoencoder(x)
        _, log = self.loss.generator_step(x, x_rec, reg, int(self.train_step), self.autoencoder.last_layer)
        self.metrics.update(x, x_rec)
        keep = ("rec_loss", "nll", "reg_loss", *reg.log)  # the regulariser's own logs, whatever they are
        self.log_dict({f"val/{k}": v for k, v in log.items() if k in keep}, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.metrics.compute().items()}, prog_bar=True)
        self.metrics.reset()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → reconstructions in [-1, 1] with eval-mode encoding."""
        return self.autoencoder(x)[0].clamp(-1, 1)

    @torch.no_grad()
    def sample_prior(self, n: int, resolution: int, generator: torch.Generator | None = None):
        """Decoded prior samples (N, C, resolution, resolution) in [-1, 1]; None when the
        regulariser has no prior (``Regularizer.sample_prior``)."""
        return self.autoencoder.sample(n, resolution, generator)

    def log_images(self, batch: dict, n: int, nrow: int = 8) -> dict[str, torch.Tensor]:
        """Rows of inputs alternating with their reconstructions; prior samples where the
        regulariser has a prior (KL)."""
        x = self._images(batch)[:n]
        rec = self.reconstruct(x)
        pairs = torch.cat([torch.cat([a, b]) for a, b in zip(x.split(nrow), rec.split(nrow), strict=True)])
        images = {"inputs_reconstructions": pairs}
        prior = self.sample_prior(n, x.shape[-1])
        if prior is not None:
            images["prior_samples"] = prior
        return images

    def configure_optimizers(self):
        params = list(self.autoencoder.parameters()) + self.loss.generator_parameters()
        precision = trainer_precision(self)
        opt_ae = build_optimizer(self.optimizer, params, part_key("module", "optimizer"), precision)
        disc_params = self.loss.discriminator.parameters()
        opt_d = build_optimizer(self.disc_optimizer, disc_params, part_key("module", "disc_optimizer"),
                                precision)
        if self.lr_decay == "cosine":
            total = self.trainer.estimated_stepping_batches
            sched_ae = warmup_cosine(opt_ae, self.warmup_steps, total, self.final_lr_ratio)
        else:
            sched_ae = linear_warmup(opt_ae, self.warmup_steps)
        return [opt_ae, opt_d], [sched_ae, linear_warmup(opt_d, self.warmup_steps)]
