"""Logit-normal levels (SD3, Esser et al. 2024): more training at intermediate noise."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess
from ldmlab.diffusion.timestep_samplers.base import TimestepSampler
from ldmlab.utils.errors import FieldError


class LogitNormalTimesteps(TimestepSampler):
    """u = sigmoid(m + s·n), n ~ N(0, 1): median sigmoid(m), spread s (SD3's rf/lognorm(0.00, 1.00)).

    On a continuous process t = from_unit(u) (flow: the shifted t); on a discrete schedule
    t = ⌊u·T⌋ clamped to [0, T − 1].
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        if not std > 0:
            raise FieldError("timestep_sampler", "std", f"must be > 0, got {std}", "e.g. {key}=1")
        self.mean, self.std = float(mean), float(std)

    def __call__(self, batch_size: int, schedule: NoiseProcess, device: torch.device) -> Tensor:
        u = torch.sigmoid(self.mean + self.std * torch.randn(batch_size, device=device))
        if schedule.continuous:
            return schedule.from_unit(u)
        return (u * schedule.num_timesteps).long().clamp(max=schedule.num_timesteps - 1)
