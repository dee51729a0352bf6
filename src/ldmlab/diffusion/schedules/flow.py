"""Flow matching's linear interpolant (rectified flow; Lipman et al. 2023, Liu et al. 2023, SD3)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.schedules.continuous import ContinuousProcess
from ldmlab.utils.errors import FieldError


class FlowSchedule(ContinuousProcess):
    """x_t = (1 − t)·x0 + t·ε, t ∈ [0, 1]; the velocity dx_t/dt = ε − x0.

    shift: SD3's time shift s (Esser et al. 2024, §5.3.2), t = s·u/(1 + (s − 1)·u) of a uniform
    u, applied to training levels (through ``from_unit``) and to the sampling grid alike; s > 1
    spends more of both at high noise, as larger images need (SD3: s = sqrt(m/n) for m pixels
    against a base of n, e.g. s = 3 at 1024² from 256²). 1 = no shift.
    time_scale: the backbone embeds time_scale·t (1000: the range of diffusers' flow-matching
    timesteps and of the discrete schedules' t, which the sinusoidal embedding is tuned for).
    """

    def __init__(self, shift: float = 1.0, time_scale: float = 1000.0) -> None:
        super().__init__()
        if not shift > 0:
            raise FieldError("schedule", "shift", f"must be > 0 (1: no shift), got {shift}", "e.g. {key}=1")
        if not time_scale > 0:
            raise FieldError("schedule", "time_scale", f"must be > 0, got {time_scale}", "e.g. {key}=1000")
        self.shift, self.time_scale = float(shift), float(time_scale)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1.0 - t, t

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.full_like(t, -1.0), torch.ones_like(t)

    def network_time(self, t: Tensor) -> Tensor:
        return self.time_scale * t

    def from_unit(self, u: Tensor) -> Tensor:
        return self.shift * u / (1.0 + (self.shift - 1.0) * u)

    def level_of_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        return sigma_tilde / (1.0 + sigma_tilde)

    def grid(self, steps: int) -> Tensor:
        return self.from_unit(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64))
