"""KL regulariser: a diagonal Gaussian posterior pulled towards N(0, I) (the LDM "KL-f" VAE)."""

from __future__ import annotations

import torch

from ldmlab.autoencoder.regularizers.base import Regularizer, RegularizerOutput
from ldmlab.config.types import PositiveInt
from ldmlab.utils.noise import Generator, gaussian

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class KLRegularizer(Regularizer):
    """Diagonal Gaussian q(z|x) = N(μ, σ²) from moments (B, 2·embed_dim, h, w) = [μ; log σ²].

    log σ² is clamped to [-30, 20]. Training samples z = μ + σ·ε, ε ~ N(0, I); eval returns the
    mode μ unless ``sample_posterior_at_eval``. The loss is KL(q ‖ N(0, I)) =
    ½·Σ_{C,H,W}(μ² + σ² − 1 − log σ²), averaged over the batch, unweighted (LDM uses 1e-6).
    """

    moments_factor = 2

    def __init__(self, embed_dim: PositiveInt, sample_posterior_at_eval: bool = False) -> None:
        super().__init__(embed_dim)
        self.sample_posterior_at_eval = sample_posterior_at_eval

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, RegularizerOutput]:
        self.check_moments(h)
        mean, logvar = h.chunk(2, dim=1)
        logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        var = logvar.exp()
        if self.training or self.sample_posterior_at_eval:
            z = mean + var.sqrt() * torch.randn_like(mean)
        else:
            z = mean
        kl = 0.5 * (mean.pow(2) + var - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
        return z, RegularizerOutput(loss=kl, log={"kl": kl.detach()})

    def sample_prior(
        self,
        shape: tuple[int, ...],
        generator: Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """z ~ N(0, I) (``ldmlab.utils.noise.gaussian``: one stream, or one per image)."""
        return gaussian(shape, generator, device)
