"""The noise process every objective, sampler and guidance term sees: x_t = α(t)·x0 + σ(t)·ε.

Two kinds of noise level t (B,): the discrete VP schedules (``NoiseSchedule``, t ∈ {0, …, T−1}
long, α² + σ² = 1) and the continuous paths (``ContinuousProcess``: flow matching's linear
interpolant with t ∈ [0, 1], EDM's σ = t; float t, 0 = clean data). Every process is also a
k-diffusion / EDM denoiser in σ̃ = σ/α (``sigma_tilde``) and the VP process with
ᾱ = α²/(α² + σ²) after scaling x by 1/sqrt(α² + σ²) (``vp_alpha_bar``), which is how the
DDIM / DDPM / DPM-Solver++ steps walk any of them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class NoiseProcess(nn.Module):
    """Base of the noise processes (the ``diffusion/schedule`` group).

    continuous: float levels (a ``ContinuousProcess``) or integer steps (a ``NoiseSchedule``).
    variance_preserving: α² + σ² = 1 at every level.
    num_timesteps: T of a discrete schedule; None for a continuous process.
    """

    continuous: bool = False
    variance_preserving: bool = True
    num_timesteps: int | None = None

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(α(t), σ(t)), each (B,), for levels t (B,) on the process's device."""
        raise NotImplementedError

    def network_time(self, t: Tensor) -> Tensor:
        """What the backbone embeds as its time input for levels t (B,): t itself by default."""
        return t

    def snr(self, t: Tensor) -> Tensor:
        """α²/σ² at t (B,) → (B,)."""
        alpha, sigma = self.alpha_sigma(t)
        return alpha.square() / sigma.square()

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor, centre: Tensor | None = None) -> Tensor:
        """x_t = α(t)·x0 + σ(t)·noise for x0, noise (B, ...); ``centre`` x̂ (B, ...) shifts the
        process to run on the residual x0 − x̂ (DiffuseVAE's formulation 2), x_t ↦ x_t + x̂."""
        if centre is not None:
            return self.q_sample(x0 - centre, t, noise) + centre
        if t.ndim != 1:
            raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}; pass one level per sample")
        alpha, sigma = self.alpha_sigma(t)
        shape = (-1, *[1] * (x0.ndim - 1))
        return alpha.view(shape).to(x0.dtype) * x0 + sigma.view(shape).to(x0.dtype) * noise

    @property
    def device(self) -> torch.device:
        """Where the process's tensors live (moves with ``.to``)."""
        return next(self.buffers()).device

    def host_alpha_sigma(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        """(α, σ) of levels (N,) on the CPU as float64: what samplers plan their steps with."""
        raise NotImplementedError


def vp_alpha_bar(alpha: Tensor, sigma: Tensor) -> Tensor:
    """ᾱ = α²/(α² + σ²) of the VP process equivalent to (α, σ) up to the scale sqrt(α² + σ²)."""
    return alpha.square() / (alpha.square() + sigma.square())


def sigma_tilde(alpha: Tensor, sigma: Tensor) -> Tensor:
    """k-diffusion's noise level σ̃ = σ/α (+∞ where α = 0)."""
    return sigma / alpha
