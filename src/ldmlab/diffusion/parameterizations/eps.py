"""ε-prediction (Ho et al. 2020)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.diffusion.parameterizations.base import Parameterization, signal_and_noise
from ldmlab.diffusion.process import NoiseProcess

MIN_SIGNAL_SCALE = 1e-4
"""Floor on sqrt(ᾱ) when dividing by it; only reached near ᾱ = 0."""


class EpsParameterization(Parameterization):
    """The network predicts the noise ε.

    x0 = (x_t − sqrt(1 − ᾱ)·ε) / sqrt(ᾱ) is undefined at ᾱ = 0 (zero terminal SNR): there
    the output carries no information about x0. The divisor is floored at
    ``MIN_SIGNAL_SCALE`` so results stay finite, but such an x0 is meaningless; train with
    ``v`` or ``x0`` when ``zero_terminal_snr`` is on.
    """

    name = "eps"

    def target(
        self, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> Tensor:
        return noise

    def to_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> tuple[Tensor, Tensor]:
        signal, noise_scale = signal_and_noise(schedule, t, x_t.ndim)
        return (x_t - noise_scale * model_output) / signal.clamp(min=MIN_SIGNAL_SCALE), model_output
