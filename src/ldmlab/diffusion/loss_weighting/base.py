"""Base class of the per-timestep loss weightings."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess


class LossWeighting(ABC):
    """Weight of each sample's loss on the parameterisation's target."""

    @abstractmethod
    def weight(self, t: Tensor, schedule: NoiseProcess) -> Tensor:
        """t (B,) long → weights (B,) on the schedule's device."""
