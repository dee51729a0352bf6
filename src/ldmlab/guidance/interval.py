"""Guidance in a limited interval of noise levels (Kynkäänniemi et al. 2024, "Applying guidance in a
limited interval improves sample and distribution quality in diffusion models")."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.diffusion.process import NoiseProcess, sigma_tilde
from ldmlab.guidance.base import BoundGuidance, Guidance, GuidanceContext, OutputGuidance
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.utils.errors import FieldError

SETTINGS = ("sigma_low", "sigma_high")
"""The bounds a sweep may set (``with_settings``)."""


class IntervalGuidance(OutputGuidance):
    """Applies the output term ``inner`` (default CFG; autoguidance too) only at the steps whose
    noise level σ̃ = σ/α (k-diffusion / EDM's σ; sqrt((1 − ᾱ_t)/ᾱ_t) on a discrete VP schedule,
    +∞ where α = 0) lies in (sigma_low, sigma_high]; every other step is one plain conditional pass.

    The paper's EDM2 values are the defaults: (0.28, 5.42]. sigma_high None is +∞ (a config cannot
    write inf). low = 0, high = None guides every step
    (the inner term as is); low = high guides none (the unguided model). ``scale`` / ``with_scale``
    / ``swept`` are the inner term's, so a sweep turns the inner scale; ``with_settings`` sets the
    bounds. ``prepare`` returns a bound copy that maps a step's host level to σ̃ without device syncs.
    """

    name = "interval"

    def __init__(self, inner: OutputGuidance | None = None, sigma_low: float = 0.28,
                 sigma_high: float | None = 5.42) -> None:
        self.inner = ClassifierFreeGuidance() if inner is None else inner
        if not isinstance(self.inner, OutputGuidance):
            raise FieldError("guidance", "inner", f"must be an output guidance (cfg, autoguidance), got "
                             f"{type(self.inner).__name__}", "e.g. {key}=cfg")
        self.sigma_low, self.sigma_high = check_bounds(sigma_low, sigma_high)
        self.num_classes = self.inner.num_classes
        self.sigma_tilde_at: Callable[[float], float] | None = None  # set on the bound copy

    @property
    def scale(self) -> float:
        return self.inner.scale

    @property
    def swept(self) -> Guidance:
        return self.inner.swept

    def with_scale(self, scale: float) -> IntervalGuidance:
        guidance = copy.copy(self)
        guidance.inner = self.inner.with_scale(scale)
        return guidance

    def with_settings(self, **settings: float) -> IntervalGuidance:
        """A copy with the named bounds (``sigma_low``, ``sigma_high``) set, checked."""
        for field in settings:
            if field not in SETTINGS:
                raise FieldError("guidance", field, "is not a setting of interval guidance",
                                 "sweep {part}.sigma_low or {part}.sigma_high")
        bounds = {"sigma_low": self.sigma_low, "sigma_high": self.sigma_high} | settings
        return IntervalGuidance(self.inner, **bounds)

    @property
    def needs_unconditional(self) -> bool:
        return self.inner.needs_unconditional

    def combine(self, cond_output: Tensor, uncond_output: Tensor) -> Tensor:
        return self.inner.combine(cond_output, uncond_output)

    def prepare(self, context: GuidanceContext) -> BoundGuidance:
        """The inner term bound to the model, behind this interval (no mixing when the inner needs none)."""
        inner = self.inner.prepare(context).mixing
        if inner is None:
            return BoundGuidance()
        bound = copy.copy(self)
        bound.inner, bound.sigma_tilde_at = inner, sigma_tilde_of(context.schedule)
        return BoundGuidance(mixing=bound)

    def active_at(self, level: float) -> bool:
        """Whether the step at ``level`` (host int step or float level) has σ̃ in (sigma_low, sigma_high]."""
        if self.sigma_tilde_at is None:
            raise RuntimeError("interval guidance must be prepared for a model (prepare) before sampling")
        return self.sigma_low < self.sigma_tilde_at(level) <= self.sigma_high and self.inner.active_at(level)

    def second_condition(self, conditioner: nn.Module, condition: dict[str, Any], num_samples: int
                         ) -> dict[str, Tensor]:
        return self.inner.second_condition(conditioner, condition, num_samples)

    def pair(self, cond: dict[str, Tensor], second: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.inner.pair(cond, second)

    def guided_output(self, model: Callable, x: Tensor, time: Tensor, cond: dict[str, Tensor],
                      paired: dict[str, Tensor]) -> Tensor:
        return self.inner.guided_output(model, x, time, cond, paired)

    def condition_inputs(self, num_samples: int) -> dict[str, Any]:
        return self.inner.condition_inputs(num_samples)


def check_bounds(sigma_low: float, sigma_high: float | None) -> tuple[float, float]:
    """The bounds as floats if 0 ≤ low ≤ high (low finite, high may be inf; None is inf); else a
    ``FieldError``."""
    sigma_high = math.inf if sigma_high is None else sigma_high
    if isinstance(sigma_low, bool) or not isinstance(sigma_low, int | float) or not 0 <= sigma_low < math.inf:
        raise FieldError("guidance", "sigma_low", f"must be a finite number ≥ 0, got {sigma_low!r}",
                         "e.g. {key}=0.28 (0: from the cleanest step)")
    if isinstance(sigma_high, bool) or not isinstance(sigma_high, int | float) or not sigma_high >= sigma_low:
        raise FieldError("guidance", "sigma_high", f"must be a number ≥ sigma_low = {sigma_low:g}, got "
                         f"{sigma_high!r}", "e.g. {key}=5.42 ({key}=null: up to the noisiest step)")
    return float(sigma_low), float(sigma_high)


def sigma_tilde_of(schedule: NoiseProcess) -> Callable[[float], float]:
    """level → σ̃ = σ/α on the host (+∞ where α = 0): a float64 table of every step of a discrete
    schedule, computed once here; the closed form of a continuous process (``host_alpha_sigma``)."""
    if schedule.continuous:
        def at(level: float) -> float:
            alpha, sigma = schedule.host_alpha_sigma(torch.tensor([float(level)], dtype=torch.float64))
            return sigma_tilde(alpha, sigma)[0].item()
        return at
    table = sigma_tilde(*schedule.host_alpha_sigma(torch.arange(schedule.num_timesteps))).tolist()
    return lambda level: table[int(level)]
