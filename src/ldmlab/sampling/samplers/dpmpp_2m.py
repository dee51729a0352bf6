"""DPM-Solver++(2M) (Lu et al. 2022), multistep, in the data-prediction form."""

from __future__ import annotations

import math

from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.sampling.samplers.base import Sampler, Transition, half_log_snr
from ldmlab.utils.noise import Generator


class DPMPP2MSampler(Sampler):
    """Second-order multistep ODE solver in λ = log(α/σ), α = sqrt(ᾱ), σ = sqrt(1 − ᾱ).

    From level s to the cleaner level t with h = λ_t − λ_s:
    x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·D, where D = x0_s at the first and the final step
    (first order, equal to DDIM) and otherwise D = (1 + 1/(2r))·x0_s − 1/(2r)·x0_last with
    r = h_last/h. At ᾱ = 0 (zero terminal SNR) λ = −∞: the first step's h = ∞ gives
    x_t = σ_t·x_s + α_t·x0_s, and the next step's r = ∞ keeps it first order, all finite.
    Deterministic: the generator is unused.
    """

    def __init__(self, steps: PositiveInt = 20, spacing: str = "trailing") -> None:
        super().__init__(steps, spacing)

    def step(
        self,
        x_t: Tensor,
        x0: Tensor,
        eps: Tensor,
        transition: Transition,
        last_x0: Tensor | None,
        generator: Generator | None,
    ) -> Tensor:
        alpha_bar, alpha_bar_prev = transition.alpha_bar, transition.alpha_bar_prev
        lambda_s, lambda_t = half_log_snr(alpha_bar), half_log_snr(alpha_bar_prev)
        h = lambda_t - lambda_s
        data = x0
        last_alpha_bar = transition.last_alpha_bar
        if last_x0 is not None and last_alpha_bar is not None and not transition.is_final:
            r = (lambda_s - half_log_snr(last_alpha_bar)) / h
            data = (1.0 + 0.5 / r) * x0 - (0.5 / r) * last_x0
        sigma_ratio = ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar)) ** 0.5
        return sigma_ratio * x_t - alpha_bar_prev**0.5 * math.expm1(-h) * data
