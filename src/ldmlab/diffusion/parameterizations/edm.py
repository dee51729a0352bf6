"""EDM's preconditioned denoiser (Karras et al. 2022, Table 1)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.diffusion.parameterizations.base import Parameterization, signal_and_noise
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.utils.errors import FieldError


class EDMParameterization(Parameterization):
    """D(x̃; σ̃) = c_skip·x̃ + c_out·F(c_in·x̃; c_noise) in k-diffusion's x̃ = x_t/α, σ̃ = σ/α
    (on EDM's own process α = 1, so x̃ = x_t and σ̃ = σ).

    c_skip = σ_d²/(σ̃² + σ_d²), c_out = σ̃·σ_d/sqrt(σ̃² + σ_d²), c_in = 1/sqrt(σ̃² + σ_d²) and
    c_noise = the process's ``network_time`` (EDM: ln(σ)/4). The network F regresses onto
    (x0 − c_skip·x̃)/c_out, so the unweighted loss on F equals EDM's λ(σ)·‖D − x0‖² with
    λ = 1/c_out² = (σ̃² + σ_d²)/(σ̃·σ_d)² (use ``loss_weighting=uniform``).
    sigma_data: σ_d, the data's standard deviation (1 for latents scaled to unit variance, as
    ldmlab's first stage scales them; EDM uses 0.5 for pixels in [-1, 1]).
    """

    name = "edm"

    def __init__(self, sigma_data: float = 1.0) -> None:
        if not sigma_data > 0:
            raise FieldError("parameterization", "sigma_data", f"must be > 0, got {sigma_data}",
                             "e.g. {key}=1")
        self.sigma_data = float(sigma_data)

    def check(self, schedule: NoiseProcess) -> None:
        if not schedule.continuous:
            raise FieldError("parameterization", "_target_", "EDM preconditioning needs a continuous-time "
                             "process, but diffusion.schedule is a discrete one",
                             "diffusion/schedule=edm (or diffusion/objective=edm)")

    def coefficients(self, t: Tensor, schedule: NoiseProcess, ndim: int
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, α), each (B, 1, …), at levels t (B,)."""
        alpha, sigma = signal_and_noise(schedule, t, ndim)
        sigma_tilde = sigma / alpha
        norm = (sigma_tilde.square() + self.sigma_data**2).sqrt()
        return self.sigma_data**2 / norm.square(), sigma_tilde * self.sigma_data / norm, 1.0 / norm, alpha

    def network_inputs(self, x_t: Tensor, t: Tensor, schedule: NoiseProcess) -> tuple[Tensor, Tensor]:
        _, _, c_in, alpha = self.coefficients(t, schedule, x_t.ndim)
        return c_in * (x_t / alpha), schedule.network_time(t)

    def target(
        self, x0: Tensor, noise: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> Tensor:
        c_skip, c_out, _, alpha = self.coefficients(t, schedule, x0.ndim)
        return (x0 - c_skip * (x_t / alpha)) / c_out

    def to_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseProcess
    ) -> tuple[Tensor, Tensor]:
        c_skip, c_out, _, alpha = self.coefficients(t, schedule, x_t.ndim)
        x_tilde = x_t / alpha
        x0 = c_skip * x_tilde + c_out * model_output
        return x0, (x_tilde - x0) * (alpha / signal_and_noise(schedule, t, x_t.ndim)[1])
