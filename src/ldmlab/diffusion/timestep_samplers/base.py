"""Base class of the training timestep samplers: which t the objective trains on."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess


class TimestepSampler(ABC):
    """Draws training levels: t ∈ {0, …, horizon − 1} ⊆ {0, …, T − 1} (long) on a discrete
    schedule, float levels of a continuous process (through its ``from_unit``).

    ``horizon(T)``: one past the largest t the model is trained on (T for the full range; T' for
    an early-stopped model, which sampling must then start at t = T' − 1, from a noised start);
    None on a continuous process (T = None).
    """

    def horizon(self, num_timesteps: int | None) -> int | None:
        """T' ≤ T: the sampled t lie in [0, T')."""
        return num_timesteps

    @abstractmethod
    def __call__(self, batch_size: int, schedule: NoiseProcess, device: torch.device) -> Tensor:
        """(batch_size,) levels on ``device`` (long steps, or floats for a continuous process),
        drawn with torch's global RNG."""
