"""Timesteps truncated to t < T' (ES-DDPM, Lyu et al. 2022: train only the last T' denoising steps)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.diffusion.timestep_samplers.base import TimestepSampler
from ldmlab.utils.errors import FieldError


class TruncatedTimesteps(TimestepSampler):
    """t ~ U{0, …, T' − 1} with T' = ``t_max`` ∈ [1, T]; T' = T is the uniform sampler.

    A model trained so cannot denoise pure noise: sampling starts at t = T' − 1 from another
    generator's sample noised by q(x_{T'−1} | x̂) (``LatentDiffusionModule.start``).
    """

    def __init__(self, t_max: PositiveInt) -> None:
        if isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 1:
            raise FieldError("timestep_sampler", "t_max", f"must be an int in [1, T], got {t_max!r}",
                             "e.g. {key}=500")
        self.t_max = t_max

    def horizon(self, num_timesteps: int | None) -> int:
        if num_timesteps is None:
            raise FieldError("timestep_sampler", "t_max", "truncates a discrete schedule's steps, but "
                             "diffusion.schedule is a continuous process", "diffusion/schedule=scaled_linear "
                             "(or another discrete schedule)")
        if self.t_max > num_timesteps:
            raise FieldError("timestep_sampler", "t_max",
                             f"{self.t_max} exceeds the schedule's T={num_timesteps}",
                             f"use at most {num_timesteps}, e.g. {{key}}={num_timesteps // 2}")
        return self.t_max

    def __call__(self, batch_size: int, schedule: NoiseProcess, device: torch.device) -> Tensor:
        return torch.randint(0, self.horizon(schedule.num_timesteps), (batch_size,), device=device)
