"""Heun's second-order method on a continuous process's probability-flow ODE (EDM's deterministic sampler)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.sampling.samplers.continuous import ContinuousSampler, LevelDenoise, Plan
from ldmlab.utils.noise import Generator


def heun_update(x: Tensor, h: float, slope: Tensor, slope_next: Tensor | None) -> Tensor:
    """x + h·(slope + slope_next)/2, or the Euler step x + h·slope without a second slope."""
    if slope_next is None:
        return x + h * slope
    return x + h * (slope + slope_next) / 2


class HeunSampler(ContinuousSampler):
    """Heun (explicit trapezoid) in the process's own time t: the Euler step's end x' is evaluated
    again and the step uses the mean of both slopes, x ← x + h·(u(x, t) + u(x', t_next))/2.

    The final step into level 0 stays an Euler step (EDM's convention: the denoiser is not
    evaluated at σ = 0), so N steps cost 2N − 1 model calls. On EDM's process (α = 1, σ = t) this
    is EDM's deterministic sampler (Karras et al. 2022, Alg. 1).
    """

    def __init__(self, steps: PositiveInt = 25) -> None:
        super().__init__(steps)

    def advance(self, denoise: LevelDenoise, x: Tensor, i: int, plan: Plan, generator: Generator | None
                ) -> tuple[Tensor, Tensor]:
        level, level_next = plan.levels[i], plan.levels[i + 1]
        x0, eps = denoise(x, level)
        slope, h = plan.velocity(i, x0, eps), level_next - level
        if level_next == 0.0:
            return heun_update(x, h, slope, None), x0
        x0, eps = denoise(heun_update(x, h, slope, None), level_next)
        return heun_update(x, h, slope, plan.velocity(i + 1, x0, eps)), x0
