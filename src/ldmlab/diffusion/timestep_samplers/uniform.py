"""Uniform timesteps over the whole schedule (DDPM's choice)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.diffusion.timestep_samplers.base import TimestepSampler


class UniformTimesteps(TimestepSampler):
    """t ~ U{0, …, T − 1}."""

    def __call__(self, batch_size: int, schedule: NoiseSchedule, device: torch.device) -> Tensor:
        return torch.randint(0, schedule.num_timesteps, (batch_size,), device=device)
