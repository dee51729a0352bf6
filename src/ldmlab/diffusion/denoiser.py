"""Turn a raw network into the sampler's ``DenoiseFn``, with optional guidance."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ldmlab.diffusion.guidance.base import Guidance
from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.schedules.base import NoiseSchedule

Model = Callable[[Tensor, Tensor, dict[str, Tensor]], Tensor]
"""(x_t (B, C, H, W), t (B,) long, condition tensors (B, ...) by name) → output (B, C, H, W)."""


class GuidedDenoiser:
    """Callable (x_t, t) → (x0_hat, eps_hat) around ``model(x_t, t, cond)``.

    When ``guidance`` needs the unconditional output, one forward pass of batch 2B is made
    on [cond; uncond] (concatenated tensor by tensor along dim 0), split and combined by the
    guidance in model-output space; otherwise one conditional pass of batch B.
    uncond: the null condition, same keys and shapes as ``cond``; required with guidance.
    """

    def __init__(
        self,
        model: Model,
        parameterization: Parameterization,
        schedule: NoiseSchedule,
        cond: dict[str, Tensor],
        uncond: dict[str, Tensor] | None = None,
        guidance: Guidance | None = None,
    ) -> None:
        self.guided = guidance is not None and guidance.needs_unconditional
        if self.guided:
            if uncond is None:
                raise ValueError("uncond is required when guidance uses the unconditional output")
            if set(uncond) != set(cond):
                raise ValueError(
                    f"uncond keys {sorted(uncond)} must equal cond keys {sorted(cond)}"
                )
            for key, value in cond.items():
                if uncond[key].shape != value.shape:
                    raise ValueError(
                        f"uncond[{key!r}] has shape {tuple(uncond[key].shape)}, "
                        f"cond[{key!r}] has {tuple(value.shape)}; they must match"
                    )
            self.batched_cond = {key: torch.cat([cond[key], uncond[key]]) for key in cond}
        self.model = model
        self.parameterization = parameterization
        self.schedule = schedule
        self.cond = cond
        self.guidance = guidance

    def __call__(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        if self.guided:
            output = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), self.batched_cond)
            cond_output, uncond_output = output.chunk(2)
            output = self.guidance.combine(cond_output, uncond_output)
        else:
            output = self.model(x_t, t, self.cond)
        return self.parameterization.to_x0_eps(output, x_t, t, self.schedule)
