"""Euler–Maruyama on the reverse SDEs of a continuous process (SiT's SDE sampler, Ma et al. 2024)."""

from __future__ import annotations

import math

from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.sampling.samplers.base import gaussian_like
from ldmlab.sampling.samplers.continuous import ContinuousSampler, LevelDenoise, Plan
from ldmlab.utils.errors import FieldError
from ldmlab.utils.noise import Generator

DIFFUSIONS = ("sigma", "sbdm", "constant")


class EulerMaruyamaSampler(ContinuousSampler):
    """The reverse SDEs dx = [u − w(t)·∇log p_t] dt + sqrt(2w(t)) dW̄, each with the marginals of
    the probability-flow ODE (u = α'·x̂0 + σ'·ε̂, ∇log p_t = −ε̂/σ), stepped from t to t_next < t
    (h = t − t_next): x ← x − h·u − h·w/σ·ε̂ + sqrt(2w·h)·z, z from ``generator``.

    diffusion: the form of w(t), times ``diffusion_norm``: "sigma" = σ(t) (SiT's default),
    "sbdm" = σσ' − σ²α'/α (the reverse of the forward process's own SDE, SiT's "SBDM";
    t/(1 − t) on flow matching's path, σ on EDM's), "constant" = 1. diffusion_norm 0 is Euler.
    The step into level 0 is the step's mean (no noise; SiT's last_step="Mean"). Where α = 0
    (flow matching's t = 1) sbdm's w is infinite: that step is the ODE's Euler step (w = 0), so
    the stochastic walk starts at the first level with α > 0.
    """

    def __init__(self, steps: PositiveInt = 250, diffusion: str = "sigma", diffusion_norm: float = 1.0
                 ) -> None:
        super().__init__(steps)
        if diffusion not in DIFFUSIONS:
            raise FieldError("sampler", "diffusion", f"must be one of {DIFFUSIONS}, got "
                             f"diffusion={diffusion!r}", "{key}=sigma")
        if not diffusion_norm >= 0:
            raise FieldError("sampler", "diffusion_norm", f"must be >= 0 (0: the ODE), got {diffusion_norm}",
                             "e.g. {key}=1")
        self.diffusion, self.diffusion_norm = diffusion, diffusion_norm

    def weight(self, plan: Plan, i: int) -> float:
        """w(t) at level i (0 where sbdm's is infinite, α = 0)."""
        if self.diffusion == "sigma":
            return self.diffusion_norm * plan.sigma[i]
        if self.diffusion == "constant":
            return self.diffusion_norm
        alpha, sigma = plan.alpha[i], plan.sigma[i]
        if alpha == 0.0:
            return 0.0
        return self.diffusion_norm * (sigma * plan.d_sigma[i] - sigma**2 * plan.d_alpha[i] / alpha)

    def advance(self, denoise: LevelDenoise, x: Tensor, i: int, plan: Plan, generator: Generator | None
                ) -> tuple[Tensor, Tensor]:
        x0, eps = denoise(x, plan.levels[i])
        h, w = plan.levels[i] - plan.levels[i + 1], self.weight(plan, i)
        mean = x - h * plan.velocity(i, x0, eps) - h * w / plan.sigma[i] * eps
        if plan.levels[i + 1] == 0.0 or w == 0.0:
            return mean, x0
        return mean + math.sqrt(2.0 * w * h) * gaussian_like(x, generator), x0
