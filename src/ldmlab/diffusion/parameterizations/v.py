"""v-prediction (Salimans & Ho 2022)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.diffusion.parameterizations.base import Parameterization, signal_and_noise
from ldmlab.diffusion.process import NoiseProcess


class VParameterization(Parameterization):
    """v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0.

    With α = sqrt(ᾱ), σ = sqrt(1 − ᾱ) and α² + σ² = 1: x0 = α·x_t − σ·v and
    ε = σ·x_t + α·v, exact (no division) for every t, including ᾱ = 0. On a process that is not
    variance preserving (flow, EDM) v = α·ε − σ·x0 and both are divided by α² + σ².
    """

    name = "v"

    def target(
        self, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> Tensor:
        signal, noise_scale = signal_and_noise(schedule, t, x0.ndim)
        return signal * noise - noise_scale * x0

    def to_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> tuple[Tensor, Tensor]:
        signal, noise_scale = signal_and_noise(schedule, t, x_t.ndim)
        x0, eps = signal * x_t - noise_scale * model_output, noise_scale * x_t + signal * model_output
        if schedule.variance_preserving:
            return x0, eps
        norm = signal.square() + noise_scale.square()
        return x0 / norm, eps / norm
