"""A trained stage-2 model as a deterministic autoencoder: images ↔ (condition, x_T) by DDIM
inversion and DDIM decoding, with interpolation in both (DiffAE's encode / decode / interpolate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.generate import CondAt, condition_at
from ldmlab.sampling.inversion import ddim_invert
from ldmlab.sampling.samplers.base import DenoiseFn
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import ConfigError


class DiffusionAutoencoder:
    """``encode(images, condition)`` → x_T (B, *latent_shape); ``decode(x_T, cond_at)`` → images
    (B, C, H, W) in [-1, 1], both with the model's EMA weights, no guidance.

    condition: the conditioner's raw inputs, e.g. a data batch (``label``, ``image`` for a semantic
    encoder, …); ``cond_at`` turns them into the per-step cond (``condition_at``) and
    ``mix`` interpolates two of those. sampler: a deterministic DDIM (η = 0); ``fixed_point_iters``
    refines each inversion step (``ddim_invert``). Models with a centred forward process are refused.
    """

    def __init__(self, module: LatentDiffusionModule, sampler: DDIMSampler, fixed_point_iters: int = 0,
                 use_ema: bool = True) -> None:
        self.module, self.sampler, self.fixed_point_iters = module, sampler, fixed_point_iters
        self.model = module.ema.shadow if use_ema else module.model
        self.model.eval()
        if any(getattr(e, "centre_forward_process", False) for e in self.conditioner.embedders.values()):
            raise ConfigError("ckpt", "DDIM inversion of a centred forward process (DiffuseVAE formulation "
                              "2) is not supported", "invert a model with the standard forward process")

    @property
    def conditioner(self):
        return self.model["conditioner"]

    def condition_at(self, condition: Mapping[str, Any]) -> CondAt:
        """The cond of ``condition`` per step (``generate.condition_at``)."""
        return condition_at(self.conditioner, condition)

    def denoiser(self, cond_at: CondAt) -> DenoiseFn:
        backbone = self.model["backbone"]
        return GuidedDenoiser(lambda x, t, _: backbone(x, t, cond_at(t)), self.module.parameterization,
                              self.module.schedule, cond={})

    @torch.no_grad()
    def encode(self, images: Tensor, condition: Mapping[str, Any]) -> Tensor:
        """x_T of ``images`` (B, C, H, W) under ``condition`` (same B)."""
        x0 = self.module.first_stage.encode(images.to(self.module.device))
        denoise = self.denoiser(self.condition_at(condition))
        return ddim_invert(self.sampler, denoise, x0, self.module.schedule, horizon=self.module.horizon,
                           fixed_point_iters=self.fixed_point_iters)

    @torch.no_grad()
    def decode(self, x_T: Tensor, cond_at: CondAt) -> Tensor:
        latents = self.sampler.sample(self.denoiser(cond_at), x_T.to(self.module.device),
                                      self.module.schedule, horizon=self.module.horizon)
        return self.module.first_stage.decode(latents)


def mix(a: CondAt, b: CondAt, weight: float) -> CondAt:
    """(1 − w)·cond_a + w·cond_b per step for float entries (vector, crossattn, concat); boolean
    masks are or-ed."""
    def cond_at(t: Tensor) -> dict[str, Tensor]:
        ca, cb = a(t), b(t)
        return {k: ca[k] | cb[k] if ca[k].dtype == torch.bool else torch.lerp(ca[k], cb[k], weight)
                for k in ca}
    return cond_at


def slerp(a: Tensor, b: Tensor, weight: float) -> Tensor:
    """Spherical interpolation per sample of (B, ...) tensors (the path between two x_T that
    keeps a Gaussian's norm); falls back to lerp for (nearly) parallel pairs."""
    flat_a, flat_b = a.flatten(1).double(), b.flatten(1).double()
    cos = (flat_a * flat_b).sum(1) / (flat_a.norm(dim=1) * flat_b.norm(dim=1)).clamp_min(1e-12)
    theta = cos.clamp(-1.0, 1.0).acos()[:, None]
    sin = theta.sin()
    parallel = sin < 1e-6
    wa = torch.where(parallel, 1.0 - weight, ((1.0 - weight) * theta).sin() / sin.clamp_min(1e-12))
    wb = torch.where(parallel, weight, (weight * theta).sin() / sin.clamp_min(1e-12))
    return (wa * flat_a + wb * flat_b).to(a.dtype).view_as(a)
