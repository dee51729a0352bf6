"""Base of the continuous-time processes: float levels t, 0 = clean data, closed-form α(t), σ(t)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess


class ContinuousProcess(NoiseProcess):
    """x_t = α(t)·x0 + σ(t)·ε with t a float level; subclasses give the closed forms.

    ``alpha_sigma`` / ``derivatives`` work in any float dtype on any device (so the same code
    plans sampler grids on the host in float64); ``from_unit`` maps u ∈ [0, 1] (0 clean,
    1 noisiest) to levels, which the continuous timestep samplers draw through, and ``grid``
    is the process's own sampling grid. No tables: the only buffer is an empty anchor that
    carries the device (not saved in checkpoints).
    """

    continuous = True
    variance_preserving = False
    num_timesteps = None

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(dα/dt, dσ/dt) at t (B,), each (B,)."""
        raise NotImplementedError

    def from_unit(self, u: Tensor) -> Tensor:
        """Levels for u ∈ [0, 1] (B,), increasing in u, u = 0 the cleanest."""
        raise NotImplementedError

    def level_of_sigma_tilde(self, sigma_tilde: Tensor) -> Tensor:
        """The level t whose σ̃ = σ(t)/α(t) is ``sigma_tilde`` (B,)."""
        raise NotImplementedError

    def grid(self, steps: int) -> Tensor:
        """The (steps + 1,) float64 levels a ``steps``-step sampler visits, descending, last = 0 (clean)."""
        raise NotImplementedError

    def host_alpha_sigma(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        return self.alpha_sigma(levels.double().cpu())
