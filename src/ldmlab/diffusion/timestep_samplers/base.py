"""Base class of the training timestep samplers: which t the objective trains on."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ldmlab.diffusion.schedules.base import NoiseSchedule


class TimestepSampler(ABC):
    """Draws training timesteps t ∈ {0, …, horizon − 1} ⊆ {0, …, T − 1}.

    ``horizon(T)``: one past the largest t the model is trained on (T for the full range; T' for
    an early-stopped model, which sampling must then start at t = T' − 1, from a noised start).
    """

    def horizon(self, num_timesteps: int) -> int:
        """T' ≤ T: the sampled t lie in [0, T')."""
        return num_timesteps

    @abstractmethod
    def __call__(self, batch_size: int, schedule: NoiseSchedule, device: torch.device) -> Tensor:
        """(batch_size,) long timesteps on ``device``, drawn with torch's global RNG."""
