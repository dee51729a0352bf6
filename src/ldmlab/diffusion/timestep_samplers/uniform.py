"""Uniform timesteps over the whole schedule (DDPM's choice)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess
from ldmlab.diffusion.timestep_samplers.base import TimestepSampler


class UniformTimesteps(TimestepSampler):
    """t ~ U{0, …, T − 1}; on a continuous process t = from_unit(u), u ~ U[0, 1) (flow: uniform
    t, shifted when the process shifts)."""

    def __call__(self, batch_size: int, schedule: NoiseProcess, device: torch.device) -> Tensor:
        if schedule.continuous:
            return schedule.from_unit(torch.rand(batch_size, device=device))
        return torch.randint(0, schedule.num_timesteps, (batch_size,), device=device)
