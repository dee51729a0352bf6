"""Base class of the network-output parameterisations."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from ldmlab.diffusion.gather import gather
from ldmlab.diffusion.schedules.base import NoiseSchedule


def signal_and_noise(schedule: NoiseSchedule, t: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
    """(sqrt(ᾱ_t), sqrt(1 − ᾱ_t)) gathered at t (B,) and shaped (B, 1, …) to broadcast over ndim."""
    return (
        gather(schedule.sqrt_alphas_cumprod, t, ndim),
        gather(schedule.sqrt_one_minus_alphas_cumprod, t, ndim),
    )


class Parameterization(ABC):
    """Maps between the network output and the pair (x0, ε) at a timestep.

    All tensors are (B, ...) with t (B,) long; x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε.
    """

    name: str

    @abstractmethod
    def target(
        self, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule
    ) -> Tensor:
        """The training target the network output is regressed onto."""

    @abstractmethod
    def to_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule
    ) -> tuple[Tensor, Tensor]:
        """Convert a network output at (x_t, t) to the predicted (x0, ε)."""
