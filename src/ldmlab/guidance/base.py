"""The guidance interface: output terms (mix model outputs) and gradient terms (add a score).

A configured ``Guidance`` is split once into its ``output_terms`` and ``gradient_terms``;
``prepare(context)`` checks it against one model and returns a ``BoundGuidance`` (the object
itself is left as it was), which is what the guided denoiser applies.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.utils.errors import FieldError


@dataclass(frozen=True)
class GuidanceContext:
    """What a guidance term may need from the model it guides (``Guidance.prepare``).

    first_stage: the frozen autoencoder (``decode`` maps scaled latents to images in [-1, 1]);
    schedule: the model's ``NoiseSchedule``; latent_shape: (C, h, w) of the sampled latents;
    conditioner: the model's ``Conditioner`` (no embedders: an unconditional model);
    parameterization: the model's ``Parameterization`` (what its network outputs; None: not given).
    """

    first_stage: nn.Module
    schedule: nn.Module
    latent_shape: tuple[int, int, int]
    conditioner: nn.Module
    parameterization: object = None


LogProb = Callable[[Tensor, Tensor, Tensor, dict[str, Any]], Tensor]
"""(x_t (B, C, h, w), t (B,), x0 (the guided clean-latent prediction), condition) → log p(y | x_t)
up to a constant, (B,), differentiable in x_t."""


@dataclass(frozen=True)
class GradientTerm:
    """One gradient term bound to a model: it adds scale·∇_{x_t} log_prob to the score.

    needs_model_grad: whether ``log_prob`` needs x0 differentiable through the denoiser network.
    """

    scale: float
    needs_model_grad: bool
    log_prob: LogProb

    @property
    def active(self) -> bool:
        """False at scale 0: the term is skipped (bit-exact with no term)."""
        return self.scale != 0.0


@dataclass(frozen=True)
class BoundGuidance:
    """A guidance prepared for one model (``Guidance.prepare``): what the guided denoiser applies.

    mixing: the output term that needs the unconditional output (None: one conditional pass);
    gradients: every gradient term, in order, active or not (an inactive one still marks the
    guidance as reading images, which centred or time-conditioned models refuse).
    """

    mixing: OutputGuidance | None = None
    gradients: tuple[GradientTerm, ...] = ()

    @property
    def active_gradients(self) -> tuple[GradientTerm, ...]:
        return tuple(term for term in self.gradients if term.active)

    @staticmethod
    def combine(parts: list[BoundGuidance]) -> BoundGuidance:
        """The parts applied together: the first mixing term, all gradient terms in order."""
        mixing = next((part.mixing for part in parts if part.mixing is not None), None)
        return BoundGuidance(mixing, tuple(term for part in parts for term in part.gradients))


class Guidance:
    """One configured guidance (a term, a composition of terms, or none).

    name: the label in tables and plots. scale: the strength a sweep turns (``with_scale``).
    num_classes: set by terms that read ``condition["label"]`` (the class to steer toward).
    output_terms / gradient_terms: its terms of each kind, in order (split once).
    """

    name: str = ""
    scale: float = 1.0
    num_classes: int | None = None
    output_terms: tuple[OutputGuidance, ...] = ()
    gradient_terms: tuple[GradientGuidance, ...] = ()

    def terms(self) -> list[Guidance]:
        """All terms, output terms first (they act first), then gradient terms."""
        return [*self.output_terms, *self.gradient_terms]

    @property
    def swept(self) -> Guidance:
        """The term whose scale ``scale`` / ``with_scale`` read and set."""
        return self

    def with_scale(self, scale: float) -> Guidance:
        """A copy with the swept scale set to ``scale`` (checked as ``guidance.scale``)."""
        guidance = copy.copy(self)
        guidance.scale = check_scale(scale)
        return guidance

    def prepare(self, context: GuidanceContext) -> BoundGuidance:
        """Check compatibility with the guided model; what the denoiser applies for it."""
        return BoundGuidance()

    def condition_inputs(self, num_samples: int) -> dict[str, Any]:
        """Per-sample inputs this guidance reads from the condition (N leading), e.g. targets."""
        return {}


class OutputGuidance(Guidance, ABC):
    """Mixes the conditional output with a second network output (classifier-free guidance: the
    unconditional one of the same network; autoguidance: a weaker network's conditional one).

    The guided denoiser asks ``active_at(level)`` each step (host-side, no device sync); where it
    is active it calls ``guided_output``, elsewhere it makes one plain conditional pass.
    """

    @property
    def output_terms(self) -> tuple[OutputGuidance, ...]:
        return (self,)

    @property
    @abstractmethod
    def needs_unconditional(self) -> bool:
        """False when ``combine`` would return the conditional output unchanged (no second pass)."""

    @abstractmethod
    def combine(self, cond_output: Tensor, uncond_output: Tensor) -> Tensor:
        """cond_output, second output (B, ...) in model-output space → guided output (B, ...)."""

    def check(self, context: GuidanceContext) -> None:
        """Refuse a model this term cannot guide (a ``ConfigError``)."""

    def prepare(self, context: GuidanceContext) -> BoundGuidance:
        self.check(context)
        return BoundGuidance(mixing=self if self.needs_unconditional else None)

    def active_at(self, level: float) -> bool:
        """Whether to guide at this noise level (the host copy of the step's t): always, here."""
        return True

    def second_condition(self, conditioner: nn.Module, condition: dict[str, Any], num_samples: int
                         ) -> dict[str, Tensor]:
        """The cond of the second output: the conditioner's learned nulls (``unconditional``)."""
        return conditioner.unconditional(condition, batch_size=num_samples)

    def pair(self, cond: dict[str, Tensor], second: dict[str, Tensor]) -> dict[str, Tensor]:
        """What ``guided_output`` reads, built once per draw: [cond; second] batched tensor by tensor."""
        check_pair(cond, second)
        return {key: torch.cat([cond[key], second[key]]) for key in cond}

    def guided_output(self, model: Callable, x: Tensor, time: Tensor, cond: dict[str, Tensor],
                      paired: dict[str, Tensor]) -> Tensor:
        """One pass of batch 2B on [x; x] with ``paired`` (``pair``), split and ``combine``d."""
        output = model(torch.cat([x, x]), torch.cat([time, time]), paired)
        return self.combine(*output.chunk(2))


def check_pair(cond: dict[str, Tensor], second: dict[str, Tensor]) -> None:
    """Raise unless ``second`` has ``cond``'s keys and shapes (the batched pass needs both)."""
    if set(second) != set(cond):
        raise ValueError(f"uncond keys {sorted(second)} must equal cond keys {sorted(cond)}")
    for key, value in cond.items():
        if second[key].shape != value.shape:
            raise ValueError(f"uncond[{key!r}] has shape {tuple(second[key].shape)}, "
                             f"cond[{key!r}] has {tuple(value.shape)}; they must match")


class GradientGuidance(Guidance, ABC):
    """Adds s·∇_{x_t} log p(y | x_t) to the score; s = ``scale`` ≥ 0 (0: off, bit-exact).

    needs_model_grad: whether the log-likelihood needs x0_hat differentiable through the denoiser
    network (else x0_hat is differentiable in x_t only through the parameterisation's formula
    with ε̂ held fixed, or not used at all). How the gradient enters a step is the sampler's
    choice (``Sampler.gradient_form``).
    """

    needs_model_grad: bool = False

    @property
    def gradient_terms(self) -> tuple[GradientGuidance, ...]:
        return (self,)

    @abstractmethod
    def bind(self, context: GuidanceContext) -> LogProb:
        """Check compatibility with ``context``'s model (a ``ConfigError``); log p(y | x_t) for it."""

    def prepare(self, context: GuidanceContext) -> BoundGuidance:
        return BoundGuidance(gradients=(GradientTerm(self.scale, self.needs_model_grad, self.bind(context)),))


def check_scale(scale: float) -> float:
    """``scale`` as a float if finite and ≥ 0, else ``guidance.scale``'s ``FieldError``."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale < 0:
        raise FieldError("guidance", "scale", f"must be a finite number ≥ 0, got {scale!r}", "e.g. {key}=2")
    return float(scale)
