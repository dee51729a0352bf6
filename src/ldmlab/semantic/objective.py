"""The training objective of a diffusion model with a learned semantic latent (DiffAE, LRDM,
InfoDiffusion): denoising loss given z ~ q(z | x0[, t]) plus a regulariser on q."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.diffusion.loss import DiffusionLoss
from ldmlab.diffusion.loss_weighting.base import LossWeighting
from ldmlab.diffusion.objective import DiffusionObjective
from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.diffusion.timestep_samplers.base import TimestepSampler
from ldmlab.semantic.info_regularizer import InfoRegularizer
from ldmlab.utils.errors import FieldError


class RepresentationObjective(DiffusionObjective):
    """loss = DiffusionObjective's regression with cond z + ``regularizer``(μ, log σ², z).

    ``encoder``: the name of the conditioner's semantic embedder
    (``ldmlab.semantic.encoder.SemanticEncoderEmbedder``). Draw order (global RNG):
    t, the posterior's ε (Gaussian), ε of the forward process, the conditioner's dropout, the
    MMD's prior draws. A time-conditioned encoder (LRDM) sees the same t as the denoiser.
    """

    def __init__(
        self,
        parameterization: Parameterization,
        loss_weighting: LossWeighting,
        loss: DiffusionLoss,
        regularizer: InfoRegularizer,
        timestep_sampler: TimestepSampler | None = None,
        encoder: str = "z_sem",
    ) -> None:
        super().__init__(parameterization, loss_weighting, loss, timestep_sampler)
        self.regularizer, self.encoder = regularizer, encoder

    def forward(
        self, model: nn.ModuleDict, x0: Tensor, batch: dict[str, Any], schedule: NoiseSchedule,
        t: Tensor | None = None,
    ) -> Tensor:
        """As ``DiffusionObjective.forward`` (t: given levels (B,), else drawn), plus the regulariser."""
        embedders = model["conditioner"].embedders
        if self.encoder not in embedders or not hasattr(embedders[self.encoder], "posterior"):
            raise FieldError("objective", "encoder", f"names no semantic encoder among the "
                             f"conditioner's embedders {sorted(embedders)}",
                             "{key}=z_sem with conditioner=semantic")
        embedder = embedders[self.encoder]
        t = self.timestep_sampler(len(x0), schedule, x0.device) if t is None else t
        encoder_t = t if embedder.time_conditioned else None
        mean, logvar = embedder.posterior(batch[embedder.source_key], encoder_t)
        z = mean if logvar is None else mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        loss = self.denoising_loss(model, x0, {**batch, embedder.input_key: z}, schedule, t)
        return loss + self.regularizer(mean, logvar, z)
