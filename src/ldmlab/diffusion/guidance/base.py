"""Base class of guidance methods that mix conditional and unconditional outputs."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor


class Guidance(ABC):
    """Combines the model outputs under the condition and under the null condition."""

    @property
    @abstractmethod
    def needs_unconditional(self) -> bool:
        """False when ``combine`` would return the conditional output unchanged."""

    @abstractmethod
    def combine(self, cond_output: Tensor, uncond_output: Tensor) -> Tensor:
        """cond_output, uncond_output (B, ...) in model-output space → guided output (B, ...)."""
