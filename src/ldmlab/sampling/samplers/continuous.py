"""Base of the ODE / SDE samplers of the continuous processes: they walk x itself in the process's time.

The probability-flow ODE of x_t = α(t)·x0 + σ(t)·ε is dx/dt = u = α'(t)·x̂0 + σ'(t)·ε̂ with the
denoiser's (x̂0, ε̂) (exact for the true E[x0 | x_t], E[ε | x_t]). The walk descends the process's
own grid (``ContinuousProcess.grid``, last level 0 = clean) from x = σ(t_0)·noise, the process at
its first level up to the α(t_0)·x0 term (exact for flow matching's t = 1; EDM's x = σ_max·ε).
Everything a step needs about the levels is planned once on the host (``Plan``), so the loop never
reads the device.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess
from ldmlab.sampling.samplers.base import DenoiseFn, Sampler, StepCallback, Transition
from ldmlab.utils.errors import FieldError
from ldmlab.utils.noise import Generator

LevelDenoise = Callable[[Tensor, float], tuple[Tensor, Tensor]]
"""(x (B, C, H, W) at a host float level, the level) → (x̂0, ε̂): the model at one level for all samples."""


@dataclass(frozen=True)
class Plan:
    """A grid's levels (steps + 1, descending, last 0) and α, σ, α', σ' there, as Python floats;
    ``process`` for levels off the grid."""

    process: NoiseProcess
    levels: list[float]
    alpha: list[float]
    sigma: list[float]
    d_alpha: list[float]
    d_sigma: list[float]

    @classmethod
    def of(cls, schedule: NoiseProcess, steps: int) -> Plan:
        levels = schedule.grid(steps)
        alpha, sigma = schedule.host_alpha_sigma(levels)
        d_alpha, d_sigma = schedule.derivatives(levels)
        return cls(schedule, *(values.tolist() for values in (levels, alpha, sigma, d_alpha, d_sigma)))

    def velocity(self, i: int, x0: Tensor, eps: Tensor) -> Tensor:
        """u = α'·x̂0 + σ'·ε̂ at level i: dx/dt of the probability-flow ODE."""
        return self.d_alpha[i] * x0 + self.d_sigma[i] * eps


class ContinuousSampler(Sampler):
    """A sampler of a continuous process: ``advance`` moves x from level i to level i + 1 of the plan.

    ``advance`` calls ``denoise(x, level)`` (x at a host float level → (x̂0, ε̂)) as often as its
    method needs and returns (x at level i + 1, the x̂0 of its last evaluation).
    """

    def check(self, num_train_timesteps: int | None, horizon: int | None = None) -> None:
        if num_train_timesteps is not None:
            raise FieldError("sampler", "_target_", f"{type(self).__name__} integrates a continuous-time "
                             "process, but the model's diffusion.schedule is discrete",
                             "use sampler=ddim|dpmpp|ddpm, or train with diffusion/objective=flow|edm")
        super().check(num_train_timesteps, horizon)

    @torch.no_grad()
    def sample(
        self,
        denoise: DenoiseFn,
        noise: Tensor,
        schedule: NoiseProcess,
        generator: Generator | None = None,
        callback: StepCallback | None = None,
        horizon: int | None = None,
    ) -> Tensor:
        """Integrate from standard normal ``noise`` (B, C, H, W) down the process's grid to a sample.

        generator: drives any in-loop noise (on ``noise``'s device). horizon: the T' of a discrete
        schedule, which ``check`` refuses; a continuous walk always starts at the grid's top level.
        """
        self.check(schedule.num_timesteps, horizon)
        plan = self.plan(schedule)

        def at(level: float) -> Tensor:
            return torch.full((noise.shape[0],), level, dtype=noise.dtype, device=noise.device)

        def denoise_at(x: Tensor, level: float) -> tuple[Tensor, Tensor]:
            return denoise(x, at(level), level)

        x = plan.sigma[0] * noise
        for i in range(self.steps):
            x, x0 = self.advance(denoise_at, x, i, plan, generator)
            if callback is not None:
                callback(i, at(plan.levels[i]), x, x0)
        return x

    def plan(self, schedule: NoiseProcess) -> Plan:
        """The levels this sampler walks on ``schedule`` (its ``grid(steps)``)."""
        return Plan.of(schedule, self.steps)

    @abstractmethod
    def advance(self, denoise: LevelDenoise, x: Tensor, i: int, plan: Plan, generator: Generator | None
                ) -> tuple[Tensor, Tensor]:
        """x at ``plan.levels[i]`` → (x at ``plan.levels[i + 1]``, the last x̂0)."""

    def step(self, x_t: Tensor, x0: Tensor, eps: Tensor, transition: Transition, last_x0: Tensor | None,
             generator: Generator | None) -> Tensor:
        """Not a VP step: these samplers walk x through ``advance``."""
        raise TypeError(f"{type(self).__name__} walks the process itself (advance), not VP transitions")
