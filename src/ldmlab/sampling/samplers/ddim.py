"""DDIM sampling (Song et al. 2021)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.config.types import PositiveInt
from ldmlab.sampling.samplers.base import Sampler, Transition, gaussian_like
from ldmlab.utils.errors import FieldError
from ldmlab.utils.noise import Generator


class DDIMSampler(Sampler):
    """x_prev = sqrt(ᾱ_prev)·x0 + sqrt(1 − ᾱ_prev − σ²)·ε + σ·z.

    σ² = η²·(1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev): eta = 0 is the deterministic DDIM
    (no noise is drawn), eta = 1 gives DDPM's posterior variance β̃ on the same steps.
    """

    def __init__(self, steps: PositiveInt = 50, spacing: str = "trailing", eta: float = 0.0) -> None:
        super().__init__(steps, spacing)
        if not eta >= 0.0:
            raise FieldError("sampler", "eta", f"must be >= 0, got eta={eta}", "e.g. {key}=0")
        self.eta = eta

    def step_variance(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        """σ² of the step from ᾱ_t to ᾱ_prev."""
        return (
            self.eta**2
            * (1.0 - alpha_bar_prev)
            / (1.0 - alpha_bar)
            * (1.0 - alpha_bar / alpha_bar_prev)
        )

    def step(
        self,
        x_t: Tensor,
        x0: Tensor,
        eps: Tensor,
        transition: Transition,
        last_x0: Tensor | None,
        generator: Generator | None,
    ) -> Tensor:
        alpha_bar_prev = transition.alpha_bar_prev
        variance = self.step_variance(transition.alpha_bar, alpha_bar_prev)
        direction = max(1.0 - alpha_bar_prev - variance, 0.0) ** 0.5
        x_prev = alpha_bar_prev**0.5 * x0 + direction * eps
        if variance == 0.0:
            return x_prev
        return x_prev + variance**0.5 * gaussian_like(x_t, generator)
