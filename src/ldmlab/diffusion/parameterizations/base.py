"""Base class of the network-output parameterisations."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess


def signal_and_noise(schedule: NoiseProcess, t: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
    """(α(t), σ(t)) at t (B,), shaped (B, 1, …) to broadcast over ndim (sqrt(ᾱ_t), sqrt(1 − ᾱ_t) for VP)."""
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}; pass one step per sample")
    alpha, sigma = schedule.alpha_sigma(t)
    shape = (-1, *[1] * (ndim - 1))
    return alpha.reshape(shape), sigma.reshape(shape)


class Parameterization(ABC):
    """Maps between the network output and the pair (x0, ε) at a noise level.

    All tensors are (B, ...) with t (B,) (long steps or float levels, ``NoiseProcess``);
    x_t = α(t)·x0 + σ(t)·ε.
    """

    name: str

    def check(self, schedule: NoiseProcess) -> None:  # noqa: B027 - defined on every process by default
        """Refuse a process this parameterisation is not defined on (a ``FieldError``)."""

    def network_inputs(self, x_t: Tensor, t: Tensor, schedule: NoiseProcess) -> tuple[Tensor, Tensor]:
        """(what the backbone sees for x_t, its time input): (x_t, ``schedule.network_time(t)``)."""
        return x_t, schedule.network_time(t)

    @abstractmethod
    def target(
        self, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> Tensor:
        """The training target the network output is regressed onto."""

    @abstractmethod
    def to_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> tuple[Tensor, Tensor]:
        """Convert a network output at (x_t, t) to the predicted (x0, ε)."""
