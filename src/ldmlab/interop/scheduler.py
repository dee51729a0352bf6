"""ldmlab noise process → its diffusers scheduler: ``DDIMScheduler`` with the same ᾱ table for a
discrete schedule, ``FlowMatchEulerDiscreteScheduler`` for flow matching with velocity prediction,
``EDMEulerScheduler`` for EDM with its preconditioning (``continuous_scheduler``). Any other pairing
has no diffusers twin and is refused (a ``ConfigError`` naming the key)."""

from __future__ import annotations

import inspect

import torch
from diffusers import DDIMScheduler, SchedulerMixin

from ldmlab.diffusion.schedules.edm import EDMSchedule
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.interop.continuous_scheduler import to_edm_scheduler, to_flow_scheduler
from ldmlab.interop.keys import group_key
from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.utils.errors import ConfigError, part_key

BETA_SCHEDULES = {"LinearSchedule": "linear", "ScaledLinearSchedule": "scaled_linear",
                  "CosineSchedule": "squaredcos_cap_v2"}
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
# continuous process → (the parameterisation its diffusers twin steps on, the objective preset choosing both)
CONTINUOUS_TWINS = {FlowSchedule: ("velocity", "flow"), EDMSchedule: ("edm", "edm")}


def to_diffusers_scheduler(
    module: LatentDiffusionModule, stored: dict
) -> tuple[SchedulerMixin, dict[str, float]]:
    """The model's diffusers scheduler, checked against ldmlab's levels, and the max |diff| of each
    check. ``stored``: the schedule's config node as the checkpoint keeps it."""
    schedule, parameterization = module.schedule, module.parameterization
    if not schedule.continuous:
        scheduler, diff = _ddim_scheduler(module, stored)
        return scheduler, {"scheduler alphas_cumprod": diff}
    if type(schedule) not in CONTINUOUS_TWINS:
        key = group_key("schedule")
        raise ConfigError(key, f"{type(schedule).__name__} has no diffusers scheduler twin",
                          f"train with {key}=flow (or edm, scaled_linear, linear, cosine)")
    name, objective = CONTINUOUS_TWINS[type(schedule)]
    if parameterization.name != name:
        key = group_key("parameterization")
        raise ConfigError(key, f"diffusers' scheduler for {type(schedule).__name__} steps on the {name!r} "
                          f"parameterisation, but the model predicts {parameterization.name!r}",
                          f"train with {key}={name} (or diffusion/objective={objective})")
    if isinstance(schedule, FlowSchedule):
        return to_flow_scheduler(schedule)
    return to_edm_scheduler(schedule, parameterization)


def _ddim_scheduler(module: LatentDiffusionModule, stored: dict) -> tuple[DDIMScheduler, float]:
    """A DDIMScheduler with the model's ᾱ table (checked), prediction type and DDIM spacing; final
    step to ᾱ = 1 as ldmlab's samplers. Returns it and max |Δᾱ|."""
    schedule = module.schedule
    kind = type(schedule)
    if kind.__name__ not in BETA_SCHEDULES:
        group = group_key("schedule")
        raise ConfigError(group, f"{kind.__name__} has no diffusers beta_schedule",
                          f"train with {group}=scaled_linear (or linear, cosine)")
    args = {name: p.default for name, p in inspect.signature(kind).parameters.items()
            if p.default is not inspect.Parameter.empty} | {k: v for k, v in stored.items() if k[0] != "_"}
    scheduler = DDIMScheduler(
        num_train_timesteps=schedule.num_timesteps, beta_schedule=BETA_SCHEDULES[kind.__name__],
        beta_start=args.get("beta_start", 1e-4), beta_end=args.get("beta_end", 0.02),
        prediction_type=PREDICTION_TYPES[module.parameterization.name], clip_sample=False,
        set_alpha_to_one=True, steps_offset=0, rescale_betas_zero_snr=schedule.zero_terminal_snr,
        timestep_spacing=getattr(module.sampler, "spacing", "trailing"))
    ours = schedule.alphas_cumprod.detach().cpu().double()
    theirs = scheduler.alphas_cumprod.double()
    if not torch.allclose(theirs, ours, rtol=1e-3, atol=1e-6):
        raise ConfigError(part_key("schedule"), f"{kind.__name__}({args}) differs from diffusers' "
                          f"'{BETA_SCHEDULES[kind.__name__]}' (e.g. a cosine s or max_beta other than "
                          "0.008 / 0.999)", "train with the schedule's default parameters")
    return scheduler, float((theirs - ours).abs().max())
