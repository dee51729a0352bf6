"""The guidance interface: output terms (mix model outputs) and gradient terms (add a score)."""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ldmlab.utils.errors import ConfigError


@dataclass(frozen=True)
class GuidanceContext:
    """What a guidance term may need from the model it guides (``Guidance.prepare``).

    first_stage: the frozen autoencoder (``decode`` maps scaled latents to images in [-1, 1]);
    schedule: the model's ``NoiseSchedule``; latent_shape: (C, h, w) of the sampled latents;
    conditioner: the model's ``Conditioner`` (no embedders: an unconditional model).
    """

    first_stage: nn.Module
    schedule: nn.Module
    latent_shape: tuple[int, int, int]
    conditioner: nn.Module


class Guidance:
    """One configured guidance (a term, a composition of terms, or none).

    name: the label in tables and plots. scale: the strength a sweep turns (``with_scale``).
    num_classes: set by terms that read ``condition["label"]`` (the class to steer toward).
    """

    name: str = ""
    scale: float = 1.0
    num_classes: int | None = None

    def terms(self) -> list[Guidance]:
        """The terms the guided denoiser applies, in order."""
        return [self]

    @property
    def swept(self) -> Guidance:
        """The term whose scale ``scale`` / ``with_scale`` read and set."""
        return self

    def with_scale(self, scale: float) -> Guidance:
        """A copy with the swept scale set to ``scale`` (checked as ``guidance.scale``)."""
        guidance = copy.copy(self)
        guidance.scale = check_scale(scale)
        return guidance

    def prepare(self, context: GuidanceContext) -> None:
        """Check compatibility with the guided model and move state to its device."""

    def condition_inputs(self, num_samples: int) -> dict[str, Any]:
        """Per-sample inputs this guidance reads from the condition (N leading), e.g. targets."""
        return {}


class OutputGuidance(Guidance, ABC):
    """Mixes the conditional and unconditional model outputs (classifier-free guidance)."""

    @property
    @abstractmethod
    def needs_unconditional(self) -> bool:
        """False when ``combine`` would return the conditional output unchanged."""

    @abstractmethod
    def combine(self, cond_output: Tensor, uncond_output: Tensor) -> Tensor:
        """cond_output, uncond_output (B, ...) in model-output space → guided output (B, ...)."""


class GradientGuidance(Guidance, ABC):
    """Adds s·∇_{x_t} log p(y | x_t) to the score; s = ``scale`` ≥ 0 (0: off, bit-exact).

    needs_model_grad: whether ``log_prob`` needs x0_hat differentiable through the denoiser
    network (else x0_hat is differentiable in x_t only through the parameterisation's formula
    with ε̂ held fixed, or not used at all).
    """

    needs_model_grad: bool = False

    @property
    def active(self) -> bool:
        return self.scale != 0.0

    @abstractmethod
    def log_prob(self, x_t: Tensor, t: Tensor, x0: Tensor, condition: dict[str, Any]) -> Tensor:
        """log p(y | x_t) up to a constant, (B,), differentiable in ``x_t`` (B, C, h, w).

        x0: the (guided) prediction of the clean latent for x_t; condition: this batch's inputs.
        """


def check_scale(scale: float, key: str = "guidance.scale") -> float:
    """``scale`` as a float if finite and ≥ 0, else ``ConfigError`` naming ``key``."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale < 0:
        raise ConfigError(key, f"must be a finite number ≥ 0, got {scale!r}", f"e.g. {key}=2")
    return float(scale)
