"""The InfoVAE regulariser of a semantic posterior q(z | x0) (LRDM, InfoDiffusion)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ldmlab.semantic.mmd import KERNELS, mmd2
from ldmlab.utils.errors import FieldError, part_key


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample, summed over dimensions: (B, d) → (B,)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)


class InfoRegularizer(nn.Module):
    """R = weight·[(1 − α)·E_x KL(q(z|x) ‖ p(z)) + (α + λ − 1)·MMD²(q(z), p(z))], p(z) = N(0, I)
    (Zhao et al.'s InfoVAE, as InfoDiffusion uses it): α = ``mi_weight`` rewards the mutual
    information between x0 and z, λ = ``prior_weight`` pulls the aggregate posterior q(z) onto the
    prior with a kernel MMD. α = 0, λ = 1 is the plain VAE term weight·KL (LRDM); a deterministic
    encoder (no KL) needs α = 1, leaving weight·λ·MMD². ``weight`` trades the regulariser (nats
    summed over z) against the diffusion loss (a mean over the C·H·W elements): 1/(C·H·W) makes
    the pair a per-image ELBO-style sum. MMD² compares the batch's z with as many prior draws.
    """

    def __init__(self, weight: float = 0.0, mi_weight: float = 0.0, prior_weight: float = 1.0,
                 kernel: str = "imq") -> None:
        super().__init__()
        problems = (
            ("weight", weight >= 0.0, "{key}=1e-3"),
            ("mi_weight", mi_weight <= 1.0, "{key}=1 (at most 1; 1: no per-sample KL)"),
            ("prior_weight", mi_weight + prior_weight - 1.0 >= 0.0,
             f"{{key}}={1.0 - mi_weight:g} (at least 1 − mi_weight)"),
            ("kernel", kernel in KERNELS, "{key}=imq (or rbf)"),
        )
        for name, ok, fix in problems:
            if not ok:
                raise FieldError("regularizer", name, f"is out of range (weight={weight}, mi_weight="
                                 f"{mi_weight}, prior_weight={prior_weight}, kernel={kernel!r})", fix)
        self.weight, self.kernel = float(weight), kernel
        self.kl_coef = float(weight) * (1.0 - mi_weight)
        self.mmd_coef = float(weight) * (mi_weight + prior_weight - 1.0)

    @property
    def needs_kl(self) -> bool:
        return self.kl_coef != 0.0

    def forward(self, mean: Tensor, logvar: Tensor | None, z: Tensor) -> Tensor:
        """μ, log σ² (None: deterministic), and the z fed to the denoiser, each (B, d) → scalar."""
        total = z.new_zeros(())
        if self.kl_coef:
            if logvar is None:
                raise FieldError("regularizer", "mi_weight", "a KL term needs a Gaussian posterior, the "
                                 "encoder is deterministic", "{key}=1 (MMD only) or "
                                 f"{part_key('semantic_encoder', 'posterior')}=gaussian")
            total = total + self.kl_coef * gaussian_kl(mean, logvar).mean()
        if self.mmd_coef:
            total = total + self.mmd_coef * mmd2(z.float(), torch.randn_like(z, dtype=torch.float32),
                                                 self.kernel)
        return total
