"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself")."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.guidance.base import BoundGuidance, GuidanceContext, OutputGuidance, check_scale
from ldmlab.utils.errors import FieldError

FIX = ("guide with a weaker train_ldm run (smaller or trained shorter) of the same first stage, schedule, "
       "parameterization and conditioner, e.g. {key}=logs/train_ldm/runs/<small run>")
SCALE_TOLERANCE = 0.05
"""Largest relative difference of the two models' latent scale factors."""


class Autoguidance(OutputGuidance):
    """out = w + s·(c − w) in model-output space: c the guided model's conditional output, w the
    guide's (a weaker model of the same latent space, schedule and parameterisation, e.g. smaller or
    trained shorter) under its own conditioner with the same condition (not the null). s = 1: no
    guidance (one pass); Karras et al. use s ≈ 2–3. Works for unconditional models too.

    guide: the guide's ``LatentDiffusionModule`` (its EMA network is used); the config loads it
    from ``guide_ckpt`` (``ldmlab.models.guide.load_guide``). guide_ckpt: where it came from, for
    messages. ``prepare`` refuses a guide of another latent space, process, parameterisation or
    conditioning, and moves the guide to the model's device.
    """

    name = "autoguidance"

    def __init__(self, scale: float = 1.0, guide_ckpt: str | None = None,
                 guide: nn.Module | None = None) -> None:
        self.scale = check_scale(scale)
        self.path = guide_ckpt or "the guide model"
        if guide is None:
            raise FieldError("guidance", "guide_ckpt", "no guide model was given",
                             "use guidance=autoguidance, which loads {key} (a weaker train_ldm run)")
        self.guide, self.network = guide, guide.ema.shadow

    @property
    def needs_unconditional(self) -> bool:
        return self.scale != 1.0

    def combine(self, cond_output: Tensor, uncond_output: Tensor) -> Tensor:
        return cond_output + (self.scale - 1.0) * (cond_output - uncond_output)  # exact at s = 1

    def check(self, context: GuidanceContext) -> None:
        guide = self.guide
        side = guide.resolution // guide.first_stage.downsample_factor
        shape = (guide.first_stage.embed_dim, side, side)
        if shape != tuple(context.latent_shape):
            self._refuse(f"samples latents {shape}, the guided model {tuple(context.latent_shape)}")
        if guide.first_stage.fingerprint() != context.first_stage.fingerprint():
            self._refuse("has another first stage (autoencoder weights differ)")
        theirs, ours = float(guide.first_stage.scale_factor), float(context.first_stage.scale_factor)
        if abs(ours / theirs - 1.0) > SCALE_TOLERANCE:
            self._refuse(f"scales latents by {theirs:.4g}, the guided model by {ours:.4g}")
        if not same_process(guide.schedule, context.schedule):
            self._refuse(f"uses the noise process {describe(guide.schedule)}, the guided model "
                         f"{describe(context.schedule)} (or their ᾱ_t differ)")
        if context.parameterization is None:
            raise ValueError("autoguidance needs the guided model's parameterization in its GuidanceContext")
        if describe(guide.parameterization) != describe(context.parameterization):
            self._refuse(f"predicts {describe(guide.parameterization)}, the guided model "
                         f"{describe(context.parameterization)}")
        ours, theirs = embedders(context.conditioner), embedders(self.network["conditioner"])
        if ours != theirs:
            self._refuse(f"is conditioned on {theirs or 'nothing'}, the guided model on {ours or 'nothing'}")

    def prepare(self, context: GuidanceContext) -> BoundGuidance:
        """Checked; at s ≠ 1 a copy whose guide network sits on the model's device, in eval mode."""
        self.check(context)
        if not self.needs_unconditional:
            return BoundGuidance()
        bound = copy.copy(self)
        bound.network = self.network.to(context.schedule.device).eval()
        return BoundGuidance(mixing=bound)

    def second_condition(self, conditioner: nn.Module, condition: dict[str, Any], num_samples: int
                         ) -> dict[str, Tensor]:
        """The guide's own encoding of the same condition (its conditioner, not the guided model's)."""
        return self.network["conditioner"](condition, batch_size=num_samples)

    def pair(self, cond: dict[str, Tensor], second: dict[str, Tensor]) -> dict[str, Tensor]:
        """The guide's cond as is (its network makes its own pass)."""
        return second

    def guided_output(self, model: Callable, x: Tensor, time: Tensor, cond: dict[str, Tensor],
                      paired: dict[str, Tensor]) -> Tensor:
        """Two passes of batch B: the guided model on ``cond``, the guide on its own cond ``paired``."""
        return self.combine(model(x, time, cond), self.network["backbone"](x, time, paired))

    def _refuse(self, problem: str) -> None:
        raise FieldError("guidance", "guide_ckpt", f"{self.path} {problem}", FIX)


def settings(part: object) -> dict[str, Any]:
    """The public scalar attributes of a process or parameterisation (its constructor values)."""
    return {key: value for key, value in sorted(vars(part).items())
            if not key.startswith("_") and key != "training" and isinstance(value, bool | int | float | str)}


def describe(part: object) -> str:
    """``Class(setting=value, ...)``."""
    return f"{type(part).__name__}({', '.join(f'{k}={v!r}' for k, v in settings(part).items())})"


def same_process(a: nn.Module, b: nn.Module) -> bool:
    """Same class and settings; for discrete schedules also the same ᾱ_t table."""
    if describe(a) != describe(b):
        return False
    if a.continuous:
        return True
    ours, theirs = a.alphas_cumprod.detach().double().cpu(), b.alphas_cumprod.detach().double().cpu()
    return ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def embedders(conditioner: nn.Module) -> dict[str, str]:
    """name → embedder class (with its class count) of a conditioner."""
    found = {}
    for name, embedder in conditioner.embedders.items():
        classes = getattr(embedder, "num_classes", None)
        found[name] = type(embedder).__name__ + ("" if classes is None else f"({classes} classes)")
    return found
