"""Cosine schedule (Nichol & Dhariwal 2021)."""

from __future__ import annotations

import math

import torch

from ldmlab.diffusion.schedules.base import NoiseSchedule, check_num_timesteps


class CosineSchedule(NoiseSchedule):
    """ᾱ_t = f((t+1)/T) / f(0) with f(u) = cos²((u + s)/(1 + s) · π/2).

    Betas β_t = 1 − f((t+1)/T)/f(t/T) are clipped to ``max_beta`` (which only bites at the
    last few steps, where f → 0).
    """

    def __init__(
        self,
        num_timesteps: int = 1000,
        s: float = 0.008,
        max_beta: float = 0.999,
        zero_terminal_snr: bool = False,
    ) -> None:
        check_num_timesteps(num_timesteps)
        if s < 0.0:
            raise ValueError(f"s must be >= 0, got s={s}")
        if not 0.0 < max_beta <= 1.0:
            raise ValueError(f"max_beta must lie in (0, 1], got max_beta={max_beta}")
        u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((u + s) / (1.0 + s) * math.pi / 2) ** 2
        betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
        super().__init__(betas, zero_terminal_snr)
