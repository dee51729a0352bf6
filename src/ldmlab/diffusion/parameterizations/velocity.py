"""Velocity prediction of flow matching (Lipman et al. 2023; SiT, SD3): u = dx_t/dt."""

from __future__ import annotations

from torch import Tensor

from ldmlab.diffusion.parameterizations.base import Parameterization, signal_and_noise
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.utils.errors import FieldError


def _derivatives(schedule: NoiseProcess, t: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
    d_alpha, d_sigma = schedule.derivatives(t)
    shape = (-1, *[1] * (ndim - 1))
    return d_alpha.reshape(shape), d_sigma.reshape(shape)


class VelocityParameterization(Parameterization):
    """The network predicts u = α'(t)·x0 + σ'(t)·ε (the linear interpolant's ε − x0).

    Inverting [x_t; u] = [[α, σ]; [α', σ']]·[x0; ε] with det = α·σ' − σ·α' (1 on the linear
    path): x0 = (σ'·x_t − σ·u)/det, ε = (α·u − α'·x_t)/det, exact at t = 0 and t = 1.
    Needs a continuous process (α and σ differentiable in t).
    """

    name = "velocity"

    def check(self, schedule: NoiseProcess) -> None:
        if not schedule.continuous:
            raise FieldError("parameterization", "_target_", "velocity prediction needs a continuous-time "
                             "process, but diffusion.schedule is a discrete one",
                             "diffusion/schedule=flow (or diffusion/objective=flow)")

    def target(
        self, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> Tensor:
        d_alpha, d_sigma = _derivatives(schedule, t, x0.ndim)
        return d_alpha * x0 + d_sigma * noise

    def to_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> tuple[Tensor, Tensor]:
        alpha, sigma = signal_and_noise(schedule, t, x_t.ndim)
        d_alpha, d_sigma = _derivatives(schedule, t, x_t.ndim)
        det = alpha * d_sigma - sigma * d_alpha
        return (d_sigma * x_t - sigma * model_output) / det, (alpha * model_output - d_alpha * x_t) / det
