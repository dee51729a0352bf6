"""Stage-1 training objective (LDM paper): reconstruction + LPIPS under a learned output
log-variance, the regulariser's loss, and a patch-GAN term with an adaptive weight and warm-up.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.autoencoder.adversarial import (
    DISCRIMINATOR_KINDS,
    GENERATOR_KINDS,
    adaptive_weight,
    disc_factor,
    discriminator_loss,
    generator_loss,
    generator_ramp,
)
from ldmlab.autoencoder.discriminator import NLayerDiscriminator
from ldmlab.autoencoder.lecam import LeCam
from ldmlab.autoencoder.regularizers.base import RegularizerOutput
from ldmlab.config.types import NonNegativeInt
from ldmlab.nn.lpips import LPIPS
from ldmlab.utils.errors import FieldError

RECONSTRUCTION = {"l1": F.l1_loss, "l2": F.mse_loss}


class AutoencoderLoss(nn.Module):
    """Generator and discriminator objectives.

    Per pixel, ``nll = (|x − x̂| + perceptual_weight · LPIPS) / exp(logvar) + logvar`` summed
    over C·H·W and averaged over the batch (so ``logvar`` is a real, optimised parameter: its
    optimum is log of the mean reconstruction error). Generator loss:
    ``nll + reg_weight · reg + disc_weight · λ · d_factor · r · L_G`` with, when ``adaptive``,
    ``λ = ‖∇_last nll‖ / (‖∇_last L_G‖ + 1e-4)`` clamped to ``max_adaptive_weight`` (else λ = 1),
    and r the generator's ramp (``generator_ramp``: 0 → 1 over ``gen_ramp_steps`` from
    ``disc_start``). Discriminator loss: ``d_factor · (L_D + lecam_weight · R_LeCam)``. Before
    ``disc_start`` the discriminator is not run at all.
    """

    def __init__(
        self,
        discriminator: NLayerDiscriminator,
        lpips: LPIPS | None,
        reconstruction: str = "l1",
        perceptual_weight: float = 1.0,
        reg_weight: float = 1e-6,
        disc_start: NonNegativeInt = 10_000,
        disc_weight: float = 0.5,
        disc_factor: float = 1.0,
        disc_loss: str = "hinge",
        gen_loss: str = "hinge",
        logvar_init: float = 0.0,
        max_adaptive_weight: float = 1e4,
        adaptive: bool = True,
        gen_ramp_steps: NonNegativeInt = 0,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.99,
    ) -> None:
        super().__init__()
        if reconstruction not in RECONSTRUCTION:
            raise FieldError("loss", "reconstruction", f"unknown {reconstruction!r}", "use 'l1' or 'l2'")
        if perceptual_weight > 0 and lpips is None:
            raise FieldError("loss", "lpips", "perceptual_weight > 0 needs LPIPS", "configure {key}")
        for key, steps in (("disc_start", disc_start), ("gen_ramp_steps", gen_ramp_steps)):
            if not isinstance(steps, int) or steps < 0:
                raise FieldError("loss", key, f"must be an integer ≥ 0, got {steps!r}", "e.g. {key}=0")
        if not 0 <= lecam_decay < 1:
            raise FieldError("loss", "lecam_decay", f"must be in [0, 1), got {lecam_decay}",
                             "e.g. {key}=0.99")
        _check_weights(perceptual_weight=perceptual_weight, reg_weight=reg_weight, disc_weight=disc_weight,
                       disc_factor=disc_factor, max_adaptive_weight=max_adaptive_weight,
                       lecam_weight=lecam_weight)
        for key, kind, kinds in (("disc_loss", disc_loss, DISCRIMINATOR_KINDS),
                                 ("gen_loss", gen_loss, GENERATOR_KINDS)):
            if kind not in kinds:
                raise FieldError("loss", key, f"unknown {kind!r}, not one of {kinds}", f"{{key}}={kinds[0]}")
        self.discriminator, self.lpips = discriminator, lpips
        self.reconstruction = reconstruction
        self.perceptual_weight, self.reg_weight = perceptual_weight, reg_weight
        self.disc_start, self.disc_weight, self.disc_factor = disc_start, disc_weight, disc_factor
        self.disc_loss, self.gen_loss = disc_loss, gen_loss
        self.max_adaptive_weight, self.adaptive = max_adaptive_weight, adaptive
        self.gen_ramp_steps, self.lecam_weight = gen_ramp_steps, lecam_weight
        self.lecam = LeCam(lecam_decay) if lecam_weight > 0 else None
        self.logvar = nn.Parameter(torch.tensor(float(logvar_init)))

    def generator_parameters(self) -> list[nn.Parameter]:
        """Loss parameters trained with the autoencoder (the log-variance)."""
        return [self.logvar]

    def nll(self, x: torch.Tensor, x_rec: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Per-batch NLL (scalar) and its parts; x, x_rec (B, C, H, W) in [-1, 1]."""
        rec = RECONSTRUCTION[self.reconstruction](x_rec, x, reduction="none")
        perceptual = torch.zeros(len(x), device=x.device)
        if self.perceptual_weight > 0:
            perceptual = self.lpips(x, x_rec)
            rec = rec + self.perceptual_weight * perceptual.view(-1, 1, 1, 1)
        nll = (rec / self.logvar.exp() + self.logvar).sum() / len(x)
        log = {"rec_loss": rec.mean().detach(), "lpips": perceptual.mean().detach(),
               "logvar": self.logvar.detach(), "nll": nll.detach()}
        return nll, log

    def generator_step(
        self,
        x: torch.Tensor,
        x_rec: torch.Tensor,
        reg: RegularizerOutput,
        step: int,
        last_layer: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll, log = self.nll(x, x_rec)
        loss = nll + self.reg_weight * reg.loss
        factor = disc_factor(step, self.disc_start, self.disc_factor)
        factor *= generator_ramp(step, self.disc_start, self.gen_ramp_steps)
        if factor > 0:
            g_loss = generator_loss(self.discriminator(x_rec), self.gen_loss)
            if self.training and self.adaptive:
                weight = adaptive_weight(nll, g_loss, last_layer, self.max_adaptive_weight)
            else:  # fixed weight, or no graph at validation: report the un-weighted term
                weight = torch.ones((), device=x.device)
            loss = loss + self.disc_weight * weight * factor * g_loss
            log |= {"g_loss": g_loss.detach(), "adaptive_weight": weight.detach()}
        log |= {"reg_loss": reg.loss.detach(), "total": loss.detach(), "disc_factor": factor}
        log |= reg.log
        return loss, log

    def discriminator_step(
        self, x: torch.Tensor, x_rec: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Discriminator loss on real ``x`` vs detached ``x_rec``; zero (no compute) before start."""
        factor = disc_factor(step, self.disc_start, self.disc_factor)
        if factor == 0:
            return torch.zeros((), device=x.device), {}
        logits_real = self.discriminator(x.detach())
        logits_fake = self.discriminator(x_rec.detach())
        loss = discriminator_loss(logits_real, logits_fake, self.disc_loss)
        log = {"logits_real": logits_real.mean().detach(), "logits_fake": logits_fake.mean().detach()}
        if self.lecam is not None:
            lecam = self.lecam(logits_real, logits_fake)
            loss = loss + self.lecam_weight * lecam
            log["lecam"] = lecam.detach()
        loss = factor * loss
        return loss, log | {"d_loss": loss.detach()}


def _check_weights(**weights: float) -> None:
    """Every loss weight is a finite number ≥ 0; else FieldError naming the loss's ``<name>``."""
    defaults = inspect.signature(AutoencoderLoss).parameters
    for name, value in weights.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise FieldError("loss", name, f"must be a finite weight ≥ 0, got {value}",
                             f"e.g. {{key}}={defaults[name].default:g}")
