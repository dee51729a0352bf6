"""Draw images from a latent diffusion model: condition → guided denoiser → sampler → decoder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.first_stage.base import FirstStageBase
from ldmlab.guidance.base import BoundGuidance
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.base import Sampler
from ldmlab.utils.errors import ConfigError, part_key
from ldmlab.utils.noise import Generator, gaussian


@torch.no_grad()
def generate_latents(
    backbone: nn.Module,
    conditioner: Conditioner,
    schedule: NoiseProcess,
    parameterization: Parameterization,
    sampler: Sampler,
    condition: Mapping[str, Any],
    latent_shape: tuple[int, int, int],
    num_samples: int,
    *,
    guidance: BoundGuidance | None = None,
    generator: Generator | None = None,
    init: Tensor | None = None,
    horizon: int | None = None,
) -> Tensor:
    """(num_samples, *latent_shape) latents; ``condition`` holds the conditioner's inputs
    (``label`` (N,), ``caption`` list of N strings, ...; absent keys use the learned null) and
    whatever the guidance reads (``Guidance.condition_inputs``). ``guidance``: a guidance prepared
    for this model (``Guidance.prepare``); None: the plain conditional model. Gradient terms enter
    the sampler's steps as it declares (``Sampler.gradient_form``).

    CFG convention: ε̃ = ε_u + s·(ε_c − ε_u), s = ``guidance.scale`` (1: no guidance).
    The walk runs on ``schedule``'s levels: a discrete schedule's steps, or a continuous process's
    grid (``Sampler.transitions``).
    horizon: T' ≤ T, the model's trained timesteps; the walk starts at t = T' − 1 (default T − 1).
    init: clean latents (num_samples, *latent_shape) of another generator; the walk then starts
    from q(x_{T'−1} | init) (ES-DDPM / SDEdit) instead of pure noise.
    A conditioner that centres the forward process on x̂ (``Conditioner.forward_centre``) makes
    the walk run on the residual x − x̂ (x_T ~ N(x̂, I)); x̂ is added back at the end.
    """
    device = schedule.device
    guidance = guidance or BoundGuidance()
    # a time-dependent condition is encoded per step (conditioned_model), not once here
    cond = {} if conditioner.time_dependent else conditioner(condition, batch_size=num_samples)
    uncond = None
    if guidance.mixing is not None:
        uncond = guidance.mixing.second_condition(conditioner, condition, num_samples)
    gradient = bool(guidance.gradients)
    centre = conditioner.forward_centre(condition)
    key = part_key("guidance")
    if gradient and centre is not None:
        raise ConfigError(key, "gradient guidance reads images, but this model's forward process is "
                          "centred on x̂ (DiffuseVAE formulation 2)", f"{key}=cfg or {key}=none")
    if gradient and schedule.continuous:
        raise ConfigError(key, "gradient guidance (classifier, image) is defined here on the discrete VP "
                          "schedules only, but this model's process is continuous", f"{key}=cfg, "
                          f"{key}=interval or {key}=autoguidance")
    form = sampler.gradient_form(schedule, horizon) if gradient else None
    model = conditioned_model(backbone, conditioner, condition, guided=uncond is not None or gradient)
    denoise = GuidedDenoiser(model, parameterization, schedule, cond, uncond, guidance, dict(condition), form,
                             centre)
    x = gaussian((num_samples, *latent_shape), generator, device)
    if init is not None:
        t_start = torch.full((num_samples,), (horizon or schedule.num_timesteps) - 1, device=device)
        start = init.to(device) if centre is None else init.to(device) - centre  # the walk's variable
        x = schedule.q_sample(start, t_start, x)
    residual_or_x = sampler.sample(denoise, x, schedule, generator=generator, horizon=horizon)
    return residual_or_x if centre is None else residual_or_x + centre


CondAt = Callable[[Tensor], dict[str, Tensor]]
"""t (B,) long → the backbone's cond dict at that step."""


def condition_at(conditioner: Conditioner, condition: Mapping[str, Any], batch_size: int | None = None
                 ) -> CondAt:
    """The cond of ``condition`` per step: encoded once, or with each step's t (B,) for a
    time-dependent conditioner (LRDM's t-conditioned encoder)."""
    if conditioner.time_dependent:
        return lambda t: conditioner({**condition, "t": t})
    cond = conditioner(condition, batch_size=batch_size)
    return lambda t: cond


def conditioned_model(
    backbone: nn.Module, conditioner: Conditioner, condition: Mapping[str, Any], guided: bool = False
) -> nn.Module | Callable[[Tensor, Tensor, dict[str, Tensor]], Tensor]:
    """``backbone``; for a time-dependent conditioner, a model that re-encodes ``condition`` at each
    step (``condition_at``) and ignores the precomputed cond (guidance, which batches precomputed
    conditions, is refused there)."""
    if not conditioner.time_dependent:
        return backbone
    if guided:
        raise ConfigError(part_key("guidance"), "this model's condition depends on t (a time-conditioned "
                          "encoder), which guidance does not support", f"{part_key('guidance')}=none")
    cond_at = condition_at(conditioner, condition)

    def model(x_t: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        return backbone(x_t, t, cond_at(t))

    return model


@torch.no_grad()
def generate_images(first_stage: FirstStageBase, **kwargs) -> Tensor:
    """``generate_latents`` then decode: (N, C, H, W) in [-1, 1]."""
    return first_stage.decode(generate_latents(**kwargs))
