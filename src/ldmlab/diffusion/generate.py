"""Draw images from a latent diffusion model: condition → guided denoiser → sampler → decoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.denoiser import GuidedDenoiser
from ldmlab.diffusion.first_stage import FirstStage
from ldmlab.diffusion.guidance.base import GradientGuidance, Guidance, OutputGuidance
from ldmlab.diffusion.guidance.forms import gradient_form
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
    *,
    guidance: Guidance | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(num_samples, *latent_shape) latents; ``condition`` holds the conditioner's inputs
    (``label`` (N,), ``caption`` list of N strings, ...; absent keys use the learned null) and
    whatever the guidance reads (``Guidance.condition_inputs``). ``guidance`` must be prepared
    (``Guidance.prepare``) for this model; None: the plain conditional model.

    CFG convention: ε̃ = ε_u + s·(ε_c − ε_u), s = ``guidance.scale`` (1: no guidance).
    """
    device = schedule.betas.device
    terms = guidance.terms() if guidance is not None else []
    cond = conditioner(condition, batch_size=num_samples)
    uncond = None
    if any(isinstance(g, OutputGuidance) and g.needs_unconditional for g in terms):
        uncond = conditioner.unconditional(condition, batch_size=num_samples)
    form = gradient_form(sampler, schedule) if any(isinstance(g, GradientGuidance) for g in terms) else None
    denoise = GuidedDenoiser(unet, parameterization, schedule, cond, uncond, guidance, dict(condition), form)
    noise = torch.randn((num_samples, *latent_shape), generator=generator, device=device)
    return sampler.sample(denoise, noise, schedule, generator=generator)


@torch.no_grad()
def generate_images(first_stage: FirstStage, **kwargs) -> Tensor:
    """``generate_latents`` then decode: (N, C, H, W) in [-1, 1]."""
    return first_stage.decode(generate_latents(**kwargs))
