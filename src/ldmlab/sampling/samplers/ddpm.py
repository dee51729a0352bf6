"""Ancestral DDPM sampling (Ho et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.diffusion.posterior import posterior_coefficients
from ldmlab.sampling.samplers.base import Sampler, Transition, gaussian_like
from ldmlab.utils.errors import ConfigError

VARIANCES = ("fixed_small", "fixed_large")


class DDPMSampler(Sampler):
    """x_prev ~ N(posterior mean from (x0, x_t), variance) on the visited subsequence.

    With steps < T, betas are recomputed for the subsequence: β = 1 − ᾱ_t/ᾱ_prev.
    variance: "fixed_small" (posterior β̃ = β·(1 − ᾱ_prev)/(1 − ᾱ_t)) or "fixed_large" (β).
    The final step adds no noise and returns the posterior mean, i.e. x0_hat.
    """

    def __init__(
        self, steps: PositiveInt = 1000, spacing: str = "trailing", variance: str = "fixed_small"
    ) -> None:
        super().__init__(steps, spacing)
        if variance not in VARIANCES:
            raise ConfigError("sampler.variance", f"must be one of {VARIANCES}, got variance={variance!r}",
                              "sampler.variance=fixed_small")
        self.variance = variance

    def step_variance(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        """Variance of the noise added when stepping from ᾱ_t to ᾱ_prev."""
        if alpha_bar_prev == 1.0:
            return 0.0
        if self.variance == "fixed_large":
            return 1.0 - alpha_bar / alpha_bar_prev
        return posterior_coefficients(alpha_bar, alpha_bar_prev)[2]

    def step(
        self,
        x_t: Tensor,
        x0: Tensor,
        eps: Tensor,
        transition: Transition,
        last_x0: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        coef_x0, coef_xt, _ = posterior_coefficients(
            transition.alpha_bar, transition.alpha_bar_prev
        )
        mean = coef_x0 * x0 + coef_xt * x_t
        variance = self.step_variance(transition.alpha_bar, transition.alpha_bar_prev)
        if variance == 0.0:
            return mean
        return mean + variance**0.5 * gaussian_like(x_t, generator)
