"""Ancestral DDPM sampling (Ho et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.diffusion.posterior import posterior_coefficients
from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.sampling.samplers.base import GradientForm, Sampler, Transition, gaussian_like, per_sample
from ldmlab.utils.errors import FieldError
from ldmlab.utils.noise import Generator

VARIANCES = ("fixed_small", "fixed_large")


class DDPMSampler(Sampler):
    """x_prev ~ N(posterior mean from (x0, x_t), variance) on the visited subsequence.

    With steps < T, betas are recomputed for the subsequence: β = 1 − ᾱ_t/ᾱ_prev.
    variance: "fixed_small" (posterior β̃ = β·(1 − ᾱ_prev)/(1 − ᾱ_t)) or "fixed_large" (β).
    The final step adds no noise and returns the posterior mean, i.e. x0_hat.
    A guidance gradient g shifts the step mean by Σ·g (``MeanShiftForm``).
    """

    def __init__(
        self, steps: PositiveInt = 1000, spacing: str = "trailing", variance: str = "fixed_small"
    ) -> None:
        super().__init__(steps, spacing)
        if variance not in VARIANCES:
            raise FieldError("sampler", "variance", f"must be one of {VARIANCES}, got variance={variance!r}",
                             "{key}=fixed_small")
        self.variance = variance

    def step_variance(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        """Variance of the noise added when stepping from ᾱ_t to ᾱ_prev."""
        if alpha_bar_prev == 1.0:
            return 0.0
        if self.variance == "fixed_large":
            return 1.0 - alpha_bar / alpha_bar_prev
        return posterior_coefficients(alpha_bar, alpha_bar_prev)[2]

    def gradient_form(self, schedule: NoiseSchedule, horizon: int | None = None) -> GradientForm:
        return MeanShiftForm(self, schedule, horizon)

    def step(
        self,
        x_t: Tensor,
        x0: Tensor,
        eps: Tensor,
        transition: Transition,
        last_x0: Tensor | None,
        generator: Generator | None,
    ) -> Tensor:
        coef_x0, coef_xt, _ = posterior_coefficients(
            transition.alpha_bar, transition.alpha_bar_prev
        )
        mean = coef_x0 * x0 + coef_xt * x_t
        variance = self.step_variance(transition.alpha_bar, transition.alpha_bar_prev)
        if variance == 0.0:
            return mean
        return mean + variance**0.5 * gaussian_like(x_t, generator)


class MeanShiftForm:
    """g shifts the ancestral step's mean by Σ·g (Dhariwal & Nichol 2021, Alg. 1), Σ the step's variance.

    The step mean is c_x0·x0 + c_xt·x_t, so x0 moves by Σ/c_x0·g (a per-t table over the sampler's
    steps below ``horizon``; 0 on the final, noiseless step), and ε̂ is recomputed from x_t and it.
    """

    def __init__(self, sampler: DDPMSampler, schedule: NoiseSchedule, horizon: int | None = None) -> None:
        gain = torch.zeros(schedule.num_timesteps, dtype=torch.float64)
        for step in sampler.transitions(schedule, horizon):
            coef_x0 = posterior_coefficients(step.alpha_bar, step.alpha_bar_prev)[0]
            gain[step.t] = sampler.step_variance(step.alpha_bar, step.alpha_bar_prev) / coef_x0
        self.gain = gain.to(schedule.alphas_cumprod.device)
        alpha_bar = schedule.alphas_cumprod.double()
        self.sqrt_alpha_bar, self.sigma = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()

    def __call__(self, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor, grad: Tensor
                 ) -> tuple[Tensor, Tensor]:
        x0 = x0 + per_sample(self.gain, t, x0) * grad
        eps = (x_t - per_sample(self.sqrt_alpha_bar, t, x0) * x0) / per_sample(self.sigma, t, x0)
        return x0, eps
