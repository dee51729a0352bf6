"""DDPM's linear beta schedule (Ho et al. 2020)."""

from __future__ import annotations

import torch

from ldmlab.config.types import PositiveInt
from ldmlab.diffusion.schedules.base import NoiseSchedule, check_beta_range, check_num_timesteps


class LinearSchedule(NoiseSchedule):
    """β_t = linspace(beta_start, beta_end, T)[t]."""

    def __init__(
        self,
        num_timesteps: PositiveInt = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        zero_terminal_snr: bool = False,
    ) -> None:
        check_num_timesteps(num_timesteps)
        check_beta_range(beta_start, beta_end)
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        super().__init__(betas, zero_terminal_snr)
