"""Base class of the discrete-time noise schedules.

Convention: T training steps, t ∈ {0, …, T−1}, x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε with
ᾱ_t = Π_{s≤t} (1 − β_s). Tables are computed in float64 and stored as float32 buffers, so
they move with ``.to(device)`` and are saved in checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.gather import gather
from ldmlab.diffusion.posterior import posterior_coefficients
from ldmlab.diffusion.process import NoiseProcess


def check_num_timesteps(num_timesteps: int) -> None:
    """Raise unless ``num_timesteps`` is an int ≥ 2."""
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 2:
        raise ValueError(f"num_timesteps must be an int >= 2, got {num_timesteps!r}")


def check_beta_range(beta_start: float, beta_end: float) -> None:
    """Raise unless 0 < beta_start ≤ beta_end < 1."""
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, "
            f"beta_end={beta_end}"
        )


def rescale_zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """Lin et al. (2024): shift and scale sqrt(ᾱ) so the last step has SNR 0.

    sqrt(ᾱ)' = (sqrt(ᾱ) − sqrt(ᾱ_{T−1})) · sqrt(ᾱ_0) / (sqrt(ᾱ_0) − sqrt(ᾱ_{T−1})); keeps ᾱ_0
    and makes ᾱ_{T−1} exactly 0. (T,) → (T,).
    """
    sqrt_ab = alphas_cumprod.sqrt()
    first, last = sqrt_ab[0], sqrt_ab[-1]
    return ((sqrt_ab - last) * first / (first - last)) ** 2


class NoiseSchedule(NoiseProcess):
    """A discrete VP process: the (T,) tables of one schedule; subclasses only supply the betas.

    Buffers (T,): ``betas``, ``alphas_cumprod`` (ᾱ_t), ``alphas_cumprod_prev`` (ᾱ_{t−1},
    with ᾱ_{−1} = 1), ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``,
    ``signal_to_noise_ratio`` (ᾱ/(1−ᾱ)) and the posterior tables ``posterior_mean_coef_x0``,
    ``posterior_mean_coef_xt``, ``posterior_variance``, ``posterior_log_variance_clipped``
    (log β̃ with β̃_0 = 0 replaced by β̃_1).

    zero_terminal_snr: rescale ᾱ so that ᾱ_{T−1} = 0 (pure noise at the last step); betas
    are then recomputed from ᾱ and β_{T−1} = 1.
    """

    def __init__(self, betas: Tensor, zero_terminal_snr: bool = False) -> None:
        super().__init__()
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("schedule betas must be a (T,) tensor with values in (0, 1]")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        if zero_terminal_snr:
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        betas = 1.0 - alphas_cumprod / alphas_cumprod_prev
        coef_x0, coef_xt, variance = posterior_coefficients(alphas_cumprod, alphas_cumprod_prev)

        self.num_timesteps = len(betas)
        self.zero_terminal_snr = zero_terminal_snr
        tables = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "signal_to_noise_ratio": alphas_cumprod / (1.0 - alphas_cumprod),
            "posterior_mean_coef_x0": coef_x0,
            "posterior_mean_coef_xt": coef_xt,
            "posterior_variance": variance,
            "posterior_log_variance_clipped": torch.cat([variance[1:2], variance[1:]]).log(),
        }
        for name, table in tables.items():
            self.register_buffer(name, table.to(torch.float32))

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(sqrt(ᾱ_t), sqrt(1 − ᾱ_t)) for t (B,) long."""
        return self.sqrt_alphas_cumprod[t], self.sqrt_one_minus_alphas_cumprod[t]

    def host_alpha_sigma(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        alpha_bar = self.alphas_cumprod.detach().double().cpu()[levels]
        return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()

    def snr(self, t: Tensor) -> Tensor:
        """SNR(t) = ᾱ_t / (1 − ᾱ_t); t (B,) long → (B,)."""
        return self.signal_to_noise_ratio[t]

    def q_posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_{t−1} | x_t, x_0) for x0, x_t (B, ...), t (B,) long.

        Returns (mean (B, ...), variance β̃_t and clipped log-variance, both (B, 1, ..., 1)).
        """
        ndim = x_t.ndim
        mean = (
            gather(self.posterior_mean_coef_x0, t, ndim) * x0
            + gather(self.posterior_mean_coef_xt, t, ndim) * x_t
        )
        return (
            mean,
            gather(self.posterior_variance, t, ndim),
            gather(self.posterior_log_variance_clipped, t, ndim),
        )
