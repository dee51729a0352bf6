"""x0-prediction: the network predicts the clean sample."""

from __future__ import annotations

from torch import Tensor

from ldmlab.diffusion.parameterizations.base import Parameterization, signal_and_noise
from ldmlab.diffusion.process import NoiseProcess


class X0Parameterization(Parameterization):
    """ε = (x_t − sqrt(ᾱ)·x0) / sqrt(1 − ᾱ); exact for every t since ᾱ_t < 1 always."""

    name = "x0"

    def target(
        self, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> Tensor:
        return x0

    def to_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> tuple[Tensor, Tensor]:
        signal, noise_scale = signal_and_noise(schedule, t, x_t.ndim)
        return model_output, (x_t - signal * model_output) / noise_scale
