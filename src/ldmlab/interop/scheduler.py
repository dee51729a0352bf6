"""ldmlab noise schedule → diffusers ``DDIMScheduler`` with the same ᾱ table."""

from __future__ import annotations

import inspect

import torch
from diffusers import DDIMScheduler

from ldmlab.interop.keys import group_key
from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.utils.errors import ConfigError, part_key

BETA_SCHEDULES = {"LinearSchedule": "linear", "ScaledLinearSchedule": "scaled_linear",
                  "CosineSchedule": "squaredcos_cap_v2"}
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def to_diffusers_scheduler(module: LatentDiffusionModule, stored: dict) -> tuple[DDIMScheduler, float]:
    """A DDIMScheduler with the model's ᾱ table (checked), prediction type and DDIM spacing; final
    step to ᾱ = 1 as ldmlab's samplers. ``stored``: the schedule's config node as the checkpoint
    keeps it. Returns it and max |Δᾱ|."""
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
