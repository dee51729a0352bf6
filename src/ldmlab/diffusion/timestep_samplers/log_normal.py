"""Log-normal noise levels (EDM, Karras et al. 2022) mapped onto the discrete schedule."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess
from ldmlab.diffusion.timestep_samplers.base import TimestepSampler
from ldmlab.utils.errors import FieldError


class LogNormalTimesteps(TimestepSampler):
    """ln σ ~ N(p_mean, p_std²) with σ = sqrt((1 − ᾱ)/ᾱ); t is the step whose ln σ_t is nearest.

    σ_t increases with t, so t = #{s : ln σ_s < ln σ} clamped to [0, T − 1] up to the nearer
    neighbour. EDM's defaults (p_mean = −1.2, p_std = 1.2) favour mid noise levels. On a
    continuous process σ is k-diffusion's σ̃ = σ/α and t its level (EDM: t = σ), not rounded.
    """

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        if not p_std > 0:
            raise FieldError("timestep_sampler", "p_std", f"must be > 0, got {p_std}", "e.g. {key}=1.2")
        self.p_mean, self.p_std = p_mean, p_std

    def __call__(self, batch_size: int, schedule: NoiseProcess, device: torch.device) -> Tensor:
        if schedule.continuous:
            log_sigma = self.p_mean + self.p_std * torch.randn(batch_size, device=device)
            return schedule.level_of_sigma_tilde(log_sigma.exp())
        alpha_bar = schedule.alphas_cumprod.to(device).double().clamp(1e-20, 1.0 - 1e-12)
        log_sigmas = 0.5 * ((1.0 - alpha_bar).log() - alpha_bar.log())  # (T,) ascending
        log_sigma = self.p_mean + self.p_std * torch.randn(batch_size, device=device, dtype=torch.float64)
        upper = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)
        lower = upper - 1
        nearer_lower = (log_sigma - log_sigmas[lower]) < (log_sigmas[upper] - log_sigma)
        return torch.where(nearer_lower, lower, upper)
