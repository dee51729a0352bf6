"""Euler's method on the probability-flow ODE of a continuous process (SiT's and SD3's ODE sampler)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.sampling.samplers.continuous import ContinuousSampler, LevelDenoise, Plan
from ldmlab.utils.noise import Generator


class EulerSampler(ContinuousSampler):
    """x ← x + (t_next − t)·u(x, t), u = α'·x̂0 + σ'·ε̂; one model call per step, first order.

    On flow matching's linear path (u = ε̂ − x̂0) the step lands on (1 − t_next)·x̂0 + t_next·ε̂,
    i.e. it is deterministic DDIM on the same grid.
    """

    def __init__(self, steps: PositiveInt = 50, spacing: str = "trailing") -> None:
        super().__init__(steps, spacing)

    def advance(self, denoise: LevelDenoise, x: Tensor, i: int, plan: Plan, generator: Generator | None
                ) -> tuple[Tensor, Tensor]:
        x0, eps = denoise(x, plan.levels[i])
        return x + (plan.levels[i + 1] - plan.levels[i]) * plan.velocity(i, x0, eps), x0
