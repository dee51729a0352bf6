"""LightningModule for stage 2: wires a frozen first stage, a conditioner, a backbone, a schedule,
an objective, a sampler and an EMA together. The maths lives in those parts.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ldmlab.autoencoder.prior import VAEPrior
from ldmlab.backbones.base import Denoiser
from ldmlab.backbones.sharding import ShardedClipping
from ldmlab.checkpoints import FIRST_STAGE_CONFIG
from ldmlab.conditioning.condition_builder import build_condition, chunk_of
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.config.renamed import rename_state
from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.diffusion.objective import DiffusionObjective
from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.diffusion.validation_levels import bucket_losses, level_buckets
from ldmlab.first_stage.base import FirstStageBase
from ldmlab.first_stage.latent_cache import LatentCache, open_latent_cache
from ldmlab.guidance.base import BoundGuidance, Guidance, GuidanceContext
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.optim.ema import EMA, EMAStep
from ldmlab.optim.lr_schedules import linear_warmup
from ldmlab.optim.optimizers import build_optimizer, trainer_precision
from ldmlab.sampling.generate import generate_images
from ldmlab.sampling.samplers.base import Sampler
from ldmlab.utils.errors import ConfigError, FieldError, part_key
from ldmlab.utils.finite import LossWatch
from ldmlab.utils.latent_scale import fit_latent_scale
from ldmlab.utils.noise import Generator
from ldmlab.utils.seeded import seeded_validation


class LatentDiffusionModule(ShardedClipping, EMAStep, pl.LightningModule):
    """Trains ``backbone`` (the denoiser network) and the conditioner's learnable parts on
    z = scale · E(x).

    ``model`` = {backbone, conditioner} is what the optimiser and the EMA see; validation and
    sampling use the EMA copy. The conditioner drops conditions to its learned nulls with
    probability ``p_uncond`` in training mode only. ``objective`` owns the loss, p(t) and the
    parameterization, which also turns network outputs into (x0, ε) for sampling.

    start: another generator (ES-DDPM): sampling starts from its samples x̂ noised by
    q(x_{T'−1} | x̂), where T' = ``horizon`` is one past the largest trained t; required when
    the objective trains t < T' < T only. A conditioning input ``x_hat`` (DiffuseVAE) is used
    as x̂ when present.

    latent_cache: a directory for the first stage's latents of the training images, encoded once
    at fit start and looked up by ``batch["index"]`` (``latent_cache.py``); None: every batch is
    encoded. Off by itself (one log line) where it would not be exact.

    compile: ``torch.compile`` the trained backbone (``nn.Module.compile``: same parameters and
    state_dict keys; the EMA copy used for validation and sampling stays eager). It pays for
    long runs only: see benchmarks/README.md for its start-up cost and per-step gain.

    val_t_buckets: validation also logs the loss at K fixed levels, one per equal bucket of the
    level range (``val/loss_t<lo>_<hi>``, ``ldmlab.diffusion.validation_levels``), comparable
    between runs and checkpoints; K extra forward passes per validation batch. 0: off.
    """

    EMA_SOURCE = "model"

    def __init__(
        self,
        first_stage: FirstStageBase,
        backbone: Denoiser,
        conditioner: Conditioner,
        schedule: NoiseProcess,
        objective: DiffusionObjective,
        sampler: Sampler,
        optimizer: partial,
        resolution: PositiveInt,
        start: VAEPrior | None = None,
        log_guidance_scales: tuple[float, ...] = (1.0, 3.0),
        ema_decay: float = 0.999,
        ema_warmup: NonNegativeInt = 10,
        warmup_steps: NonNegativeInt = 0,
        scale_fit_batches: PositiveInt = 4,
        latent_cache: str | None = None,
        compile: bool = False,
        val_t_buckets: NonNegativeInt = 4,
    ) -> None:
        super().__init__()
        self.loss_watch = LossWatch("train/loss")
        if backbone.in_channels != first_stage.embed_dim:
            raise FieldError(
                "backbone", "in_channels", f"is {backbone.in_channels} but the first stage has embed_dim="
                f"{first_stage.embed_dim}", f"{{key}}={first_stage.embed_dim} (or leave it at "
                "${first_stage_embed_dim})",
            )
        try:
            conditioner.check_compatible(backbone)
        except ValueError as err:
            raise ConfigError("backbone", str(err), "match the backbone keys to the conditioner") from None
        self.horizon = objective.check(schedule)
        if self.horizon is not None and self.horizon < schedule.num_timesteps and start is None:
            raise FieldError("module", "start", f"the objective trains t < {self.horizon} only, so sampling "
                             "cannot start from pure noise at T − 1", "give a generator to start from, "
                             "e.g. experiment=es_ddpm generator_ckpt=/path/to/vae.ckpt")
        self.first_stage, self.start = first_stage, start
        self.model = nn.ModuleDict({"backbone": backbone, "conditioner": conditioner})
        self.ema = EMA(self.model, ema_decay, ema_warmup)
        self.register_load_state_dict_pre_hook(_renamed_backbone_state)  # pre-rename checkpoints
        if compile:  # after the EMA copy: a deepcopy of a compiled module would call the original
            backbone.compile()
        self.schedule, self.objective = schedule, objective
        self.parameterization: Parameterization = objective.parameterization
        self.sampler, self.optimizer = sampler, optimizer
        self.warmup_steps, self.scale_fit_batches = warmup_steps, scale_fit_batches
        self.resolution, self.log_guidance_scales = resolution, tuple(log_guidance_scales)
        self.latent_cache_dir = latent_cache
        self.latent_cache: LatentCache | None = None  # opened at fit start
        self.val_buckets = level_buckets(schedule, val_t_buckets, self.horizon)

    def check_data(self, datamodule) -> None:
        f = self.first_stage.downsample_factor
        if datamodule.resolution % f or datamodule.resolution != self.resolution:
            raise FieldError(
                "data", "resolution", f"{datamodule.resolution} must equal "
                f"{part_key('module', 'resolution')}={self.resolution} and be divisible by the first stage's "
                f"f={f}", f"use a multiple of {f}",
            )
        self.model["conditioner"].check_num_classes(getattr(datamodule, "num_classes", 0))
        where = f"{part_key('data', 'resolution')}={self.resolution}, f={f}"
        self.model["conditioner"].check_latent_shape(self.first_stage.embed_dim, self.resolution // f, where)

    def on_fit_start(self) -> None:
        """Fit the latent scale from real data once (all ranks pooled; resumed runs keep theirs),
        then read or build the latent cache, which the training loader then serves."""
        fit_latent_scale(self)
        if self.latent_cache_dir is not None:
            data = self.trainer.datamodule
            self.latent_cache = open_latent_cache(self.latent_cache_dir, self.first_stage, data, self.device)
            if self.latent_cache is not None:
                data.serve_latents(self.latent_cache.store, "image" in self.model["conditioner"].reads())

    def latents(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's scaled latents: the cached unscaled latents the training loader serves
        (``batch["latent"]``), else E(image)."""
        if "latent" in batch:
            return batch["latent"] * self.first_stage.scale_factor
        return self.first_stage.encode(batch["image"])

    def diffusion_loss(self, batch: dict[str, Any], model: nn.ModuleDict) -> torch.Tensor:
        """The objective on this batch's latents, with ``model`` = {backbone, conditioner}."""
        return self.objective(model, self.latents(batch), batch, self.schedule)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.diffusion_loss(batch, self.model)
        self.loss_watch.observe(loss, self)
        # batch_size given: Lightning would otherwise walk the batch to find it, every step
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """``val/loss`` at drawn levels, then the loss at each bucket's fixed level (same seed)."""
        seeded = partial(seeded_validation, self, batch_idx)
        with seeded():
            latents = self.latents(batch)
            loss = self.objective(self.ema.shadow, latents, batch, self.schedule)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        buckets = bucket_losses(self.objective, self.ema.shadow, latents, batch, self.schedule,
                                self.val_buckets, seeded)
        for name, value in buckets.items():
            self.log(f"val/{name}", value, sync_dist=True, batch_size=len(latents))

    @torch.no_grad()
    def generate(
        self,
        condition: dict[str, Any],
        num_samples: int,
        *,
        guidance: Guidance | BoundGuidance | None = None,
        sampler: Sampler | None = None,
        generator: Generator | None = None,
        use_ema: bool = True,
    ) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1]; a ``Guidance`` is prepared for this model here, a
        ``BoundGuidance`` (``prepare_guidance``, once for many calls) used as is; see
        ``ldmlab.sampling.generate``. generator: every draw's noise (the start's prior sample, the
        initial noise, the sampler's), one stream or one per image (``ldmlab.utils.noise``)."""
        model = self.ema.shadow if use_ema else self.model
        was_training = model.training
        model.eval()
        latent = self.resolution // self.first_stage.downsample_factor
        latent_shape = (self.first_stage.embed_dim, latent, latent)
        if isinstance(guidance, Guidance):
            guidance = self.prepare_guidance(guidance, use_ema)
        init = None
        if self.start is not None:
            x_hat = condition.get("x_hat")
            x_hat = self.start.sample(num_samples, generator) if x_hat is None else x_hat.to(self.device)
            init = self.first_stage.encode(x_hat)
        images = generate_images(
            self.first_stage, backbone=model["backbone"], conditioner=model["conditioner"],
            schedule=self.schedule, parameterization=self.parameterization,
            sampler=sampler or self.sampler, condition=condition, latent_shape=latent_shape,
            num_samples=num_samples, guidance=guidance, generator=generator, init=init, horizon=self.horizon,
        )
        model.train(was_training)
        return images

    def prepare_guidance(self, guidance: Guidance, use_ema: bool = True) -> BoundGuidance:
        """``guidance`` checked against this model and bound to it, for ``generate``."""
        latent = self.resolution // self.first_stage.downsample_factor
        conditioner = (self.ema.shadow if use_ema else self.model)["conditioner"]
        latent_shape = (self.first_stage.embed_dim, latent, latent)
        context = GuidanceContext(self.first_stage, self.schedule, latent_shape, conditioner,
                                  self.parameterization)
        return guidance.prepare(context)

    def log_images(self, batch: dict[str, Any], n: int) -> dict[str, torch.Tensor]:
        """Samples at each CFG scale of ``log_guidance_scales`` for the validation batch's other
        inputs, with classes 0, 1, …, K−1, 0, … so each grid row sweeps the classes (``build_condition``)."""
        condition = build_condition(self.model["conditioner"], n, source=batch)
        condition = chunk_of(condition, 0, n, self.device)
        generator = torch.Generator(device=self.device).manual_seed(0)
        guided = self.model["conditioner"].embedders
        return {
            f"samples_scale{scale:g}": self.generate(
                condition, n, guidance=ClassifierFreeGuidance(scale) if guided else None,
                generator=generator.manual_seed(0))
            for scale in (self.log_guidance_scales if guided else (1.0,))
        }

    def configure_optimizers(self):
        optimizer = build_optimizer(self.optimizer, self.model.parameters(), part_key("module", "optimizer"),
                                    trainer_precision(self))
        scheduler = linear_warmup(optimizer, self.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the first stage's architecture so sampling needs only this file."""
        checkpoint[FIRST_STAGE_CONFIG] = self.first_stage.autoencoder_config

    def summary_extras(self) -> dict[str, Any]:
        return {"scale_factor": float(self.first_stage.scale_factor),
                "first_stage_ckpt": self.first_stage.checkpoint_path,
                "latent_cache": self.latent_cache.summary() if self.latent_cache is not None else None}


def _renamed_backbone_state(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load a checkpoint written before the denoiser slot was renamed: ``model.unet.*`` and
    ``ema.shadow.unet.*`` are read as ``...backbone.*``."""
    rename_state(state_dict, prefix)
