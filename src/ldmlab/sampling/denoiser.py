"""Turn a raw network into the sampler's ``DenoiseFn``, with the configured guidance applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.guidance.base import BoundGuidance
from ldmlab.sampling.samplers.base import GradientForm

Model = Callable[[Tensor, Tensor, dict[str, Tensor]], Tensor]
"""(x (B, C, H, W), time input (B,), condition tensors (B, ...) by name) → output (B, C, H, W)."""


class GuidedDenoiser:
    """Callable (x_t, t, level) → (x0_hat, eps_hat) around ``model(x_in, time, cond)``, where the
    parameterisation gives the network's inputs (``network_inputs``: x_t and t as they are on a
    discrete schedule; EDM's c_in·x and c_noise).

    Output guidance (``mixing``) where it is active at the step's level: CFG makes one forward pass
    of batch 2B on [cond; uncond] (concatenated tensor by tensor along dim 0), split and combined in
    model-output space; autoguidance adds a weaker network's pass. Active gradient terms (scale ≠ 0):
    under ``torch.enable_grad`` only here, x_t is made a leaf, g = ∇_{x_t} Σ_i s_i·log p_i(y | x_t) is
    taken over the whole batch at once (samples are independent), and ``form`` (the sampler's
    ``Sampler.gradient_form``) folds g into (x0, ε̂).
    The network is differentiated only when a term ``needs_model_grad``; otherwise terms see
    x0 = (x_t − sqrt(1 − ᾱ_t)·ε̂)/sqrt(ᾱ_t) with ε̂ held fixed.
    guidance: a guidance prepared for this model (``Guidance.prepare``); None: no guidance.
    uncond: the second output's condition (``OutputGuidance.second_condition``: CFG's null, same
    keys and shapes as ``cond``); required with output guidance.
    condition: the batch's raw inputs (labels, targets, …) that gradient terms read.
    centre: x̂ (B, C, H, W) of a centred forward process (``NoiseSchedule.q_sample``): the sampler
    walks the residual r_t = x_t − x̂, the network sees r_t + x̂, and (x0_hat, eps_hat) are the
    residual's; gradient guidance is refused there (its terms read images, not residuals).
    """

    def __init__(
        self,
        model: Model,
        parameterization: Parameterization,
        schedule: NoiseProcess,
        cond: dict[str, Tensor],
        uncond: dict[str, Tensor] | None = None,
        guidance: BoundGuidance | None = None,
        condition: dict[str, Any] | None = None,
        form: GradientForm | None = None,
        centre: Tensor | None = None,
    ) -> None:
        guidance = guidance or BoundGuidance()
        self.mixing, self.gradients = guidance.mixing, guidance.active_gradients
        if self.mixing is not None:
            if uncond is None:
                raise ValueError("uncond is required when guidance uses a second output")
            self.paired = self.mixing.pair(cond, uncond)
        if self.gradients and form is None:
            raise ValueError("gradient guidance needs a form (the sampler's gradient_form)")
        if self.gradients and centre is not None:
            raise ValueError("gradient guidance needs the standard forward process, not a centred one")
        self.centre = centre
        self.model, self.parameterization, self.schedule = model, parameterization, schedule
        self.cond, self.condition, self.form = cond, condition or {}, form
        self.through_model = any(g.needs_model_grad for g in self.gradients)

    def __call__(self, x_t: Tensor, t: Tensor, level: float | None = None) -> tuple[Tensor, Tensor]:
        """level: t's value on the host (samplers pass it); None reads it from t (a device sync)."""
        if not self.gradients:
            return self.predict(x_t, t, level)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            with torch.set_grad_enabled(self.through_model):
                x0, eps = self.predict(x, t, level)
            if not self.through_model:
                x0 = self._x0_of(x, t, eps, x0)
            log_prob = sum(term.scale * term.log_prob(x, t, x0, self.condition) for term in self.gradients)
            (grad,) = torch.autograd.grad(log_prob.sum(), x)
        return self.form(x_t, t, x0.detach(), eps.detach(), grad)

    def predict(self, x_t: Tensor, t: Tensor, level: float | None = None) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) of the network with output guidance, without gradient terms."""
        if level is None and self.mixing is not None:
            level = t[0].item()
        inputs = x_t if self.centre is None else x_t + self.centre
        inputs, time = self.parameterization.network_inputs(inputs, t, self.schedule)
        if self.mixing is not None and self.mixing.active_at(level):
            output = self.mixing.guided_output(self.model, inputs, time, self.cond, self.paired)
        else:
            output = self.model(inputs, time, self.cond)
        return self.parameterization.to_x0_eps(output, x_t, t, self.schedule)

    def _x0_of(self, x: Tensor, t: Tensor, eps: Tensor, fallback: Tensor) -> Tensor:
        """x0 differentiable in x with ε̂ fixed; the network's x0 where ᾱ_t = 0."""
        alpha_bar = self.schedule.alphas_cumprod[t].to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        x0 = (x - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.clamp_min(1e-20).sqrt()
        return torch.where(alpha_bar > 0, x0, fallback)
