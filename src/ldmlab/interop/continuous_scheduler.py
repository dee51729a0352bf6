"""ldmlab's continuous processes → their diffusers schedulers, on the same grid (checked).

Flow matching + velocity → ``FlowMatchEulerDiscreteScheduler``: it walks σ = t of x_t = (1 − σ)·x0
+ σ·ε, feeds the network the timestep 1000·σ and steps x ← x + (σ_next − σ)·u with the predicted
velocity u = ε − x0. Its grid equals ``FlowSchedule.grid(N)`` when the caller passes
``sigmas=linspace(1, 1/N, N)`` to ``set_timesteps`` (as diffusers' Flux pipeline does; the
scheduler shifts them); ``set_timesteps(N)`` alone spaces σ down to shift(1/1000) instead.

EDM + EDM preconditioning → ``EDMEulerScheduler`` (``prediction_type="epsilon"`` is EDM's
c_out = σ·σ_d/sqrt(σ² + σ_d²)): the network sees c_in·x and c_noise = ln(σ)/4 as ldmlab's, its
Karras grid with a final σ = 0 is ``EDMSchedule.grid(N)`` for ``set_timesteps(N)``, and its Euler
step x ← x + (σ_next − σ)·(x − D)/σ is ldmlab's deterministic step (DDIM is Euler in σ̃ = σ/α).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import EDMEulerScheduler, FlowMatchEulerDiscreteScheduler, SchedulerMixin
from torch import Tensor

from ldmlab.diffusion.parameterizations.edm import EDMParameterization
from ldmlab.diffusion.schedules.continuous import ContinuousProcess
from ldmlab.diffusion.schedules.edm import EDMSchedule
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.utils.errors import FieldError

NUM_TRAIN_TIMESTEPS = 1000  # diffusers' flow-matching timestep = 1000·σ
CHECKED_STEPS = (1, 2, 7, 50, 1000)


def flow_sigmas(steps: int) -> np.ndarray:
    """The unshifted σ to pass as ``set_timesteps(sigmas=...)`` for ldmlab's ``steps``-step grid: (steps,)."""
    return np.linspace(1.0, 1.0 / steps, steps)


def to_flow_scheduler(schedule: FlowSchedule) -> tuple[FlowMatchEulerDiscreteScheduler, dict[str, float]]:
    """The twin of ``schedule`` (shift carried over) and its max |Δσ|, |Δtimestep| against ours; a
    ``FieldError`` naming ``time_scale`` when the backbone's time input is not diffusers' 1000·σ."""
    if schedule.time_scale != NUM_TRAIN_TIMESTEPS:
        raise FieldError("schedule", "time_scale", f"the backbone embeds {schedule.time_scale:g}·t, but "
                         f"diffusers' flow-matching timesteps are {NUM_TRAIN_TIMESTEPS}·σ",
                         f"train with {{key}}={NUM_TRAIN_TIMESTEPS}")
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=schedule.shift)
    return scheduler, same_grids(scheduler, schedule, lambda steps: {"sigmas": flow_sigmas(steps)})


def to_edm_scheduler(schedule: EDMSchedule, parameterization: EDMParameterization
                     ) -> tuple[EDMEulerScheduler, dict[str, float]]:
    """The twin of ``schedule`` with the preconditioning's σ_d, and its max |Δσ|, |Δtimestep| against ours."""
    scheduler = EDMEulerScheduler(
        sigma_min=schedule.sigma_min, sigma_max=schedule.sigma_max, sigma_data=parameterization.sigma_data,
        rho=schedule.rho, sigma_schedule="karras", prediction_type="epsilon", final_sigmas_type="zero")
    return scheduler, same_grids(scheduler, schedule, lambda steps: {"num_inference_steps": steps})


def same_grids(scheduler: SchedulerMixin, process: ContinuousProcess, arguments) -> dict[str, float]:
    """For each of ``CHECKED_STEPS``: ``scheduler.set_timesteps(**arguments(steps))`` must give
    σ = ``process.grid(steps)`` (levels = σ on both processes) and timesteps = ``network_time`` of
    them; a RuntimeError otherwise (diffusers changed). Max |Δσ| and |Δtimestep| over all."""
    sigma_diff = time_diff = 0.0
    for steps in CHECKED_STEPS:
        grid = process.grid(steps)
        scheduler.set_timesteps(**arguments(steps))
        sigmas, times = scheduler.sigmas.double(), scheduler.timesteps.double()
        ours_times = process.network_time(grid[:-1])
        if not (_close(sigmas, grid) and _close(times, ours_times)):
            raise RuntimeError(f"diffusers' {type(scheduler).__name__} walks another {steps}-step grid than "
                               f"{type(process).__name__}: sigmas {sigmas.tolist()} vs {grid.tolist()}")
        sigma_diff = max(sigma_diff, float((sigmas - grid).abs().max()))
        time_diff = max(time_diff, float((times - ours_times).abs().max()))
    return {"scheduler sigmas": sigma_diff, "scheduler timesteps": time_diff}


def _close(theirs: Tensor, ours: Tensor) -> bool:
    """Equal up to diffusers' float32 rounding."""
    return theirs.shape == ours.shape and torch.allclose(theirs, ours, rtol=1e-6, atol=1e-6)
