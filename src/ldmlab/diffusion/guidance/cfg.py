"""Classifier-free guidance (Ho & Salimans 2022) with optional rescale (Lin et al. 2024)."""

from __future__ import annotations

import math

from torch import Tensor

from ldmlab.diffusion.guidance.base import Guidance
from ldmlab.utils.errors import ConfigError


def check_rescale(rescale: float, key: str = "guidance_rescale") -> float:
    """``rescale`` if it is a valid φ ∈ [0, 1]; else ``ConfigError`` naming ``key``."""
    if not 0.0 <= float(rescale) <= 1.0:
        raise ConfigError(key, f"must be in [0, 1] (0: plain CFG), got {rescale}", f"e.g. {key}=0.7")
    return float(rescale)


class ClassifierFreeGuidance(Guidance):
    """out = u + s·(c − u) in model-output space; s = 1: no guidance, s = 0: unconditional.

    scale: the guidance scale s (Ho & Salimans' w = s − 1, see ``w``).
    rescale: φ ∈ [0, 1]. The guided output is rescaled per sample to the standard deviation of
    the conditional output, then mixed: φ·rescaled + (1 − φ)·out (0 = plain CFG).
    """

    def __init__(self, scale: float, rescale: float = 0.0) -> None:
        if not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got scale={scale}")
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"rescale must lie in [0, 1], got rescale={rescale}")
        self.scale = float(scale)
        self.rescale = float(rescale)

    @property
    def w(self) -> float:
        """Ho & Salimans' guidance weight w = s − 1."""
        return self.scale - 1.0

    @property
    def needs_unconditional(self) -> bool:
        return self.scale != 1.0

    def combine(self, cond_output: Tensor, uncond_output: Tensor) -> Tensor:
        guided = cond_output + self.w * (cond_output - uncond_output)  # exact at s = 1
        if self.rescale == 0.0:
            return guided
        dims = tuple(range(1, guided.ndim))
        ratio = cond_output.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
        return self.rescale * guided * ratio + (1.0 - self.rescale) * guided
