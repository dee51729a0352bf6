"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): Heun with "churn" noise injection."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.sampling.samplers.base import gaussian_like
from ldmlab.sampling.samplers.continuous import ContinuousSampler, LevelDenoise, Plan
from ldmlab.sampling.samplers.heun import heun_update
from ldmlab.utils.errors import FieldError
from ldmlab.utils.noise import Generator


class EDMSampler(ContinuousSampler):
    """Karras et al. 2022, Alg. 2, in k-diffusion's variables x̃ = x/α and σ̃ = σ/α (dx̃/dσ̃ = ε̂).

    Step i: γ = min(s_churn/N, √2 − 1) where s_min ≤ σ̃_i ≤ s_max (else 0), σ̂ = σ̃_i·(1 + γ),
    x̂ = x̃ + sqrt(σ̂² − σ̃_i²)·s_noise·z (z from ``generator``), the model called at the level
    of σ̂ (``level_of_sigma_tilde``), an Euler step to σ̃_{i+1} and Heun's correction unless
    σ̃_{i+1} = 0 (2N − 1 model calls). s_churn = 0 is ``HeunSampler`` (exactly so on EDM's
    process, where x̃ = x). s_max None: no upper bound (the paper's ∞). The first level must have
    α > 0 (σ̃ finite): flow matching's t = 1 is refused.
    """

    def __init__(self, steps: PositiveInt = 18, s_churn: float = 0.0, s_min: float = 0.0,
                 s_max: float | None = None, s_noise: float = 1.0) -> None:
        super().__init__(steps)
        if not s_churn >= 0:
            raise FieldError("sampler", "s_churn", f"must be >= 0 (0: deterministic), got {s_churn}",
                             "e.g. {key}=0")
        if not 0 <= s_min <= (math.inf if s_max is None else s_max):
            raise FieldError("sampler", "s_min", f"need 0 <= s_min <= s_max, got {s_min} and {s_max}",
                             "e.g. {key}=0 {part}.s_max=null")
        if not s_noise >= 0:
            raise FieldError("sampler", "s_noise", f"must be >= 0, got {s_noise}", "e.g. {key}=1")
        self.s_churn, self.s_min, self.s_max, self.s_noise = s_churn, s_min, s_max, s_noise

    def plan(self, schedule: NoiseProcess) -> Plan:
        plan = super().plan(schedule)
        if plan.alpha[0] == 0.0:
            raise FieldError("sampler", "_target_", f"{type(self).__name__} works in σ̃ = σ/α, which is "
                             f"infinite at the process's first level t = {plan.levels[0]} (α = 0, e.g. flow "
                             "matching)",
                             "use sampler=heun (Heun in the process's own time)")
        return plan

    def churn(self, sigma_tilde: float) -> float:
        """γ_i of a step from σ̃ = ``sigma_tilde``."""
        s_max = math.inf if self.s_max is None else self.s_max
        if self.s_churn == 0 or not self.s_min <= sigma_tilde <= s_max:
            return 0.0
        return min(self.s_churn / self.steps, math.sqrt(2.0) - 1.0)

    def advance(self, denoise: LevelDenoise, x: Tensor, i: int, plan: Plan, generator: Generator | None
                ) -> tuple[Tensor, Tensor]:
        level, alpha = plan.levels[i], plan.alpha[i]
        sigma_tilde, x_tilde = plan.sigma[i] / alpha, x / alpha
        gamma = self.churn(sigma_tilde)
        if gamma > 0:
            sigma_hat = sigma_tilde * (1.0 + gamma)
            spread = math.sqrt(sigma_hat**2 - sigma_tilde**2) * self.s_noise
            x_tilde = x_tilde + spread * gaussian_like(x_tilde, generator)
            level_hat = plan.process.level_of_sigma_tilde(torch.tensor([sigma_hat], dtype=torch.float64))
            level, alpha = level_hat.item(), plan.process.host_alpha_sigma(level_hat)[0].item()
            sigma_tilde = sigma_hat
        level_next, alpha_next = plan.levels[i + 1], plan.alpha[i + 1]
        sigma_tilde_next = plan.sigma[i + 1] / alpha_next
        x0, slope = denoise(alpha * x_tilde, level)
        h = sigma_tilde_next - sigma_tilde
        if sigma_tilde_next == 0.0:
            return alpha_next * heun_update(x_tilde, h, slope, None), x0
        x0, slope_next = denoise(alpha_next * heun_update(x_tilde, h, slope, None), level_next)
        return alpha_next * heun_update(x_tilde, h, slope, slope_next), x0
