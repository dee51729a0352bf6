"""Latent diffusion's "linear" schedule: linear in sqrt(β) (Rombach et al. 2022)."""

from __future__ import annotations

import torch

from ldmlab.config.types import PositiveInt
from ldmlab.diffusion.schedules.base import NoiseSchedule, check_beta_range, check_num_timesteps


class ScaledLinearSchedule(NoiseSchedule):
    """β_t = linspace(sqrt(beta_start), sqrt(beta_end), T)[t]²."""

    def __init__(
        self,
        num_timesteps: PositiveInt = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        zero_terminal_snr: bool = False,
    ) -> None:
        check_num_timesteps(num_timesteps)
        check_beta_range(beta_start, beta_end)
        sqrt_betas = torch.linspace(
            beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64
        )
        super().__init__(sqrt_betas**2, zero_terminal_snr)
