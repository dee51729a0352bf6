"""Draw images from a latent diffusion model: condition → guided denoiser → sampler → decoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.denoiser import GuidedDenoiser
from ldmlab.diffusion.first_stage import FirstStage
from ldmlab.diffusion.guidance.cfg import ClassifierFreeGuidance
from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.samplers.base import Sampler
from ldmlab.diffusion.schedules.base import NoiseSchedule


@torch.no_grad()
def generate_latents(
    unet: nn.Module,
    conditioner: Conditioner,
    schedule: NoiseSchedule,
    parameterization: Parameterization,
    sampler: Sampler,
    condition: Mapping[str, Any],
    latent_shape: tuple[int, int, int],
    num_samples: int,
    guidance_scale: float = 1.0,
    guidance_rescale: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(num_samples, *latent_shape) latents; ``condition`` holds the conditioner's inputs
    (``label`` (N,), ``caption`` list of N strings, ...; absent keys use the learned null).

    CFG convention: ε̃ = ε_u + s·(ε_c − ε_u), s = ``guidance_scale`` (1: no guidance).
    """
    device = schedule.betas.device
    cond = conditioner(condition, batch_size=num_samples)
    guidance = None
    uncond = None
    if guidance_scale != 1.0 and conditioner.embedders:
        guidance = ClassifierFreeGuidance(guidance_scale, guidance_rescale)
        uncond = conditioner.unconditional(condition, batch_size=num_samples)
    denoise = GuidedDenoiser(unet, parameterization, schedule, cond, uncond, guidance)
    noise = torch.randn((num_samples, *latent_shape), generator=generator, device=device)
    return sampler.sample(denoise, noise, schedule, generator=generator)


@torch.no_grad()
def generate_images(first_stage: FirstStage, **kwargs) -> Tensor:
    """``generate_latents`` then decode: (N, C, H, W) in [-1, 1]."""
    return first_stage.decode(generate_latents(**kwargs))
