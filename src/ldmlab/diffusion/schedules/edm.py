"""EDM's variance-exploding process (Karras et al. 2022): x_σ = x0 + σ·ε."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.schedules.continuous import ContinuousProcess
from ldmlab.utils.errors import FieldError


class EDMSchedule(ContinuousProcess):
    """α = 1, σ(t) = t: the level is σ itself. The backbone embeds c_noise = ln(σ)/4.

    Sampling grid (EDM eq. 5): σ_i = (σ_max^{1/ρ} + i/(N − 1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for
    i < N, then σ_N = 0; ``from_unit`` is the same curve, u = 1 at σ_max and u = 0 at σ_min.
    Training levels come from the timestep sampler (EDM: ``log_normal``), not from these bounds.
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> None:
        super().__init__()
        if not 0 < sigma_min < sigma_max:
            raise FieldError("schedule", "sigma_min", f"need 0 < sigma_min < sigma_max, got {sigma_min} and "
                             f"{sigma_max}", "e.g. {key}=0.002 {part}.sigma_max=80")
        if not rho > 0:
            raise FieldError("schedule", "rho", f"must be > 0, got {rho}", "e.g. {key}=7")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), t

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(t), torch.ones_like(t)

    def network_time(self, t: Tensor) -> Tensor:
        return t.log() / 4.0

    def from_unit(self, u: Tensor) -> Tensor:
        low, high = self.sigma_min ** (1.0 / self.rho), self.sigma_max ** (1.0 / self.rho)
        return (low + u * (high - low)) ** self.rho

    def level_of_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        return sigma_tilde

    def grid(self, steps: int) -> Tensor:
        if steps == 1:
            return torch.tensor([self.sigma_max, 0.0], dtype=torch.float64)
        levels = self.from_unit(torch.linspace(1.0, 0.0, steps, dtype=torch.float64))
        return torch.cat([levels, levels.new_zeros(1)])
