"""How a gradient g = Σ s_i·∇ log p_i(y | x_t) enters a sampler step, chosen by the sampler.

- ancestral DDPM: the step mean shifts by Σ·g (Dhariwal & Nichol 2021, Alg. 1), Σ the step's
  variance. The step mean is c_x0·x0 + c_xt·x_t, so x0 moves by Σ/c_x0 · g (a per-t table);
- every other sampler (DDIM, DPM-Solver++): the score form ε̂ ← ε̂ − sqrt(1 − ᾱ_t)·g, with x0
  recomputed from it: x0 ← x0 + (1 − ᾱ_t)/sqrt(ᾱ_t)·g (Alg. 2); at ᾱ_t = 0 x0 is kept.
Both return (x0, ε̂) consistent with x_t, so samplers stay unaware of guidance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ldmlab.diffusion.posterior import posterior_coefficients
from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.sampling.samplers.base import Sampler
from ldmlab.sampling.samplers.ddpm import DDPMSampler

GradientForm = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
"""(x_t, t (B,), x0, ε̂, g) → guided (x0, ε̂), all but t shaped like x_t."""


def _per_sample(table: Tensor, t: Tensor, like: Tensor) -> Tensor:
    return table[t].to(like.dtype).view(-1, *[1] * (like.ndim - 1))


class ScoreForm:
    """ε̂ − sqrt(1 − ᾱ_t)·g and the matching x0."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        alpha_bar = schedule.alphas_cumprod.double()
        self.sigma = (1.0 - alpha_bar).sqrt()
        self.x0_gain = torch.where(alpha_bar > 0, (1.0 - alpha_bar) / alpha_bar.clamp_min(1e-300).sqrt(), 0.0)

    def __call__(self, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor, grad: Tensor) -> tuple[Tensor, ...]:
        return x0 + _per_sample(self.x0_gain, t, x0) * grad, eps - _per_sample(self.sigma, t, eps) * grad


class MeanShiftForm:
    """x0 + Σ_t/c_x0(t)·g on the sampler's visited steps (0 on the final, noiseless step)."""

    def __init__(self, sampler: DDPMSampler, schedule: NoiseSchedule, horizon: int | None = None) -> None:
        gain = torch.zeros(schedule.num_timesteps, dtype=torch.float64)
        for step in sampler.transitions(schedule, horizon):
            coef_x0 = posterior_coefficients(step.alpha_bar, step.alpha_bar_prev)[0]
            gain[step.t] = sampler.step_variance(step.alpha_bar, step.alpha_bar_prev) / coef_x0
        self.gain = gain.to(schedule.alphas_cumprod.device)
        alpha_bar = schedule.alphas_cumprod.double()
        self.sqrt_alpha_bar, self.sigma = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()

    def __call__(self, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor, grad: Tensor) -> tuple[Tensor, ...]:
        x0 = x0 + _per_sample(self.gain, t, x0) * grad
        eps = (x_t - _per_sample(self.sqrt_alpha_bar, t, x0) * x0) / _per_sample(self.sigma, t, x0)
        return x0, eps


def gradient_form(sampler: Sampler, schedule: NoiseSchedule, horizon: int | None = None) -> GradientForm:
    """The mean-shift form for ancestral DDPM (on its steps below ``horizon``), the score form for
    every other sampler."""
    if isinstance(sampler, DDPMSampler):
        return MeanShiftForm(sampler, schedule, horizon)
    return ScoreForm(schedule)
