"""Pure functions for the stage-1 adversarial loss: GAN objectives, adaptive weight, warm-up.

Conventions (ℓ = discriminator logits, softplus(x) = log(1 + eˣ), σ = sigmoid):
- discriminator, hinge:   ½·[mean relu(1 − ℓ_real) + mean relu(1 + ℓ_fake)]
- discriminator, vanilla: ½·[mean softplus(−ℓ_real) + mean softplus(ℓ_fake)]  (BCE, ½ as in LDM)
- generator, hinge:          −mean ℓ_fake
- generator, non_saturating: mean softplus(−ℓ_fake) = −mean log σ(ℓ_fake)
- generator, vanilla:        −mean softplus(ℓ_fake) = mean log(1 − σ(ℓ_fake))  (minimax, saturates)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DISCRIMINATOR_KINDS = ("hinge", "vanilla")
GENERATOR_KINDS = ("hinge", "non_saturating", "vanilla")


def _check_kind(kind: str, valid: tuple[str, ...]) -> None:
    if kind not in valid:
        raise ValueError(f"kind={kind!r} is not a valid GAN loss; choose one of {valid}")


def discriminator_loss(
    logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str
) -> torch.Tensor:
    """Scalar discriminator loss from logits of any shape; ``kind`` ∈ {hinge, vanilla}."""
    _check_kind(kind, DISCRIMINATOR_KINDS)
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def generator_loss(logits_fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Scalar generator loss; ``kind`` ∈ {hinge, non_saturating, vanilla}."""
    _check_kind(kind, GENERATOR_KINDS)
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean()
    return -F.softplus(logits_fake).mean()


def adaptive_weight(
    rec_loss: torch.Tensor,
    g_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
) -> torch.Tensor:
    """λ = ‖∇_last rec_loss‖ / (‖∇_last g_loss‖ + 1e-4), clamped to [0, max_weight], detached.

    ``last_layer`` is the decoder's final weight. Both graphs are retained for the caller's
    backward. Needs grad mode, so skip it in validation (use λ = 0 or the last train value).
    """
    if max_weight < 0:
        raise ValueError(f"max_weight={max_weight} must be >= 0")
    if not (torch.is_grad_enabled() and rec_loss.requires_grad and g_loss.requires_grad):
        raise ValueError(
            "adaptive_weight needs rec_loss and g_loss with autograd graphs (grad mode on); "
            "do not call it under torch.no_grad / in validation"
        )
    rec_grad, g_grad = (
        torch.autograd.grad(loss, last_layer, retain_graph=True, allow_unused=True)[0]
        for loss in (rec_loss, g_loss)
    )
    if rec_grad is None or g_grad is None:
        raise ValueError("last_layer must influence both rec_loss and g_loss (pass the decoder's "
                         "final conv weight)")
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


def disc_factor(global_step: int, disc_start: int, factor: float = 1.0) -> float:
    """Weight of the adversarial terms: 0 before step ``disc_start``, ``factor`` from it on."""
    return factor if global_step >= disc_start else 0.0


def generator_ramp(global_step: int, disc_start: int, ramp_steps: int) -> float:
    """Share of the generator's adversarial term: 0 before ``disc_start``, then rising linearly
    to 1 over ``ramp_steps`` steps ((step − disc_start + 1) / ramp_steps); 1 from the start when
    ``ramp_steps`` is 0. The discriminator trains at full weight meanwhile."""
    if global_step < disc_start:
        return 0.0
    return 1.0 if ramp_steps == 0 else min(1.0, (global_step - disc_start + 1) / ramp_steps)
