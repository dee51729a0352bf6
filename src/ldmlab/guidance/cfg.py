"""Classifier-free guidance (Ho & Salimans 2022) with optional rescale (Lin et al. 2024)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.guidance.base import GuidanceContext, OutputGuidance, check_scale
from ldmlab.utils.errors import FieldError


def check_rescale(rescale: float) -> float:
    """``rescale`` if it is a valid φ ∈ [0, 1]; else ``guidance.rescale``'s ``FieldError``."""
    if not 0.0 <= float(rescale) <= 1.0:
        raise FieldError("guidance", "rescale", f"must be in [0, 1] (0: plain CFG), got {rescale}",
                         "e.g. {key}=0.7")
    return float(rescale)


class ClassifierFreeGuidance(OutputGuidance):
    """out = u + s·(c − u) in model-output space; s = 1: no guidance, s = 0: unconditional.

    scale: the guidance scale s (Ho & Salimans' w = s − 1, see ``w``).
    rescale: φ ∈ [0, 1]. The guided output is rescaled per sample to the standard deviation of
    the conditional output, then mixed: φ·rescaled + (1 − φ)·out (0 = plain CFG).
    """

    name = "cfg"

    def __init__(self, scale: float = 1.0, rescale: float = 0.0) -> None:
        self.scale = check_scale(scale)
        self.rescale = check_rescale(rescale)

    @property
    def w(self) -> float:
        """Ho & Salimans' guidance weight w = s − 1."""
        return self.scale - 1.0

    @property
    def needs_unconditional(self) -> bool:
        return self.scale != 1.0

    def check(self, context: GuidanceContext) -> None:
        if self.needs_unconditional and not context.conditioner.embedders:
            raise FieldError("guidance", "scale", f"is {self.scale:g} but the model is unconditional, so "
                             "classifier-free guidance has nothing to mix",
                             "{key}=1 (or {part}=classifier / {part}=none)")

    def combine(self, cond_output: Tensor, uncond_output: Tensor) -> Tensor:
        guided = cond_output + self.w * (cond_output - uncond_output)  # exact at s = 1
        if self.rescale == 0.0:
            return guided
        dims = tuple(range(1, guided.ndim))
        ratio = cond_output.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
        return self.rescale * guided * ratio + (1.0 - self.rescale) * guided
