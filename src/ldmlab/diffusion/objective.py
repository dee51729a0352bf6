"""The stage-2 training objective: timestep sampler + forward process + parameterised regression."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.diffusion.loss import DiffusionLoss
from ldmlab.diffusion.loss_weighting.base import LossWeighting
from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.diffusion.timestep_samplers.base import TimestepSampler
from ldmlab.diffusion.timestep_samplers.uniform import UniformTimesteps


class DiffusionObjective(nn.Module):
    """loss = mean_b w(t_b)·d(net(x_t, t, c), target), t ~ ``timestep_sampler``, x_t ~ q(x_t | x_0).

    As sgm's ``StandardDiffusionLoss`` owns its sigma sampler, this owns p(t); the module only
    supplies the clean latents, the batch (for the conditioner) and the network pair.
    Draw order (global RNG): t, then ε, then the conditioner's dropout. When the conditioner
    centres the forward process on x̂ (``Conditioner.forward_centre``, DiffuseVAE formulation 2),
    x_t ~ q(x_t | x0, x̂) and the target is the parameterisation's on the residual x0 − x̂.
    """

    def __init__(
        self,
        parameterization: Parameterization,
        loss_weighting: LossWeighting,
        loss: DiffusionLoss,
        timestep_sampler: TimestepSampler | None = None,
    ) -> None:
        super().__init__()
        self.parameterization, self.loss_weighting, self.loss = parameterization, loss_weighting, loss
        self.timestep_sampler = timestep_sampler or UniformTimesteps()

    def check(self, schedule: NoiseProcess) -> int | None:
        """Refuse parts not defined on ``schedule``; the horizon T' of the trained steps (None:
        a continuous process)."""
        self.parameterization.check(schedule)
        return self.timestep_sampler.horizon(schedule.num_timesteps)

    def forward(
        self, model: nn.ModuleDict, x0: Tensor, batch: dict[str, Any], schedule: NoiseProcess,
        t: Tensor | None = None,
    ) -> Tensor:
        """model: {"backbone", "conditioner"}; x0 (B, C, h, w) clean (latent) inputs → scalar loss.
        t: levels (B,) to evaluate at instead of drawing them (validation buckets); then no t is drawn."""
        centre = model["conditioner"].forward_centre(batch)
        t = self.timestep_sampler(len(x0), schedule, x0.device) if t is None else t
        return self.denoising_loss(model, x0, batch, schedule, t, centre)

    def denoising_loss(
        self, model: nn.ModuleDict, x0: Tensor, batch: dict[str, Any], schedule: NoiseProcess, t: Tensor,
        centre: Tensor | None = None,
    ) -> Tensor:
        """The weighted regression at given timesteps t (B,): draws ε, then the conditioner's dropout."""
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, noise, centre)
        inputs, time = self.parameterization.network_inputs(x_t, t, schedule)
        output = model["backbone"](inputs, time, model["conditioner"](batch))
        if centre is not None:  # the standard process on the residual
            x0, x_t = x0 - centre, x_t - centre
        target = self.parameterization.target(x0, noise, x_t, t, schedule)
        return self.loss(output, target, self.loss_weighting.weight(t, schedule))
