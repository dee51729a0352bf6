"""Vector quantiser (VQ-VAE) with optional EMA codebook, cosine lookup and dead-code restart."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange

from ldmlab.autoencoder.regularizers.base import Regularizer, RegularizerOutput
from ldmlab.config.types import PositiveInt

LAPLACE_EPS = 1e-5


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VectorQuantizer(Regularizer):
    """Nearest-code quantisation of z (B, D, h, w), D = embed_dim, with a (K, D) codebook.

    Lookup is by L2 distance, or by angle when ``l2_normalize`` (z and codes are unit-normalised
    before lookup and loss). The output z + sg[z_q − z] (straight-through) carries exactly the
    code values forward and passes the decoder's gradient to the encoder unchanged.

    Loss (unweighted; ‖·‖² is the mean over elements):
        ‖sg[z] − z_q‖²  codebook term, omitted with ``use_ema`` (the EMA moves the codes)
      + β·‖z − sg[z_q]‖²  commitment term, pulls the encoder towards its codes.

    Statistics (training only, no grad, counts/sums all-reduced over DDP ranks):
    ``cluster_size`` (K,) is an EMA of per-code assignment counts; with ``use_ema``,
    ``embed_sum`` (K, D) is an EMA of the summed assigned vectors and the codebook becomes
    embed_sum / Laplace-smoothed cluster_size. With ``restart_dead_codes``, codes whose
    ``cluster_size`` falls below ``dead_code_threshold`` are re-drawn from the batch's encoder
    vectors (rank 0's draw, broadcast). Fresh codes (at init and after a restart) start at
    ``max(1, dead_code_threshold)`` pseudo-assignments, so a fresh code survives its next step
    only if it attracts at least that many vectors (fewer with threshold < 1).
    """

    moments_factor = 1

    def __init__(
        self,
        embed_dim: PositiveInt,
        codebook_size: PositiveInt,
        beta: float = 0.25,
        use_ema: bool = False,
        ema_decay: float = 0.99,
        l2_normalize: bool = False,
        restart_dead_codes: bool = True,
        dead_code_threshold: float = 1.0,
    ) -> None:
        super().__init__(embed_dim)
        if codebook_size < 2:
            raise ValueError(f"codebook_size={codebook_size} must be at least 2")
        if beta < 0:
            raise ValueError(f"beta={beta} (commitment weight) must be >= 0")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay={ema_decay} must lie in (0, 1), e.g. 0.99")
        if dead_code_threshold < 0:
            raise ValueError(f"dead_code_threshold={dead_code_threshold} must be >= 0")
        self.codebook_size = codebook_size
        self.beta = beta
        self.use_ema = use_ema
        self.ema_decay = ema_decay
        self.l2_normalize = l2_normalize
        self.restart_dead_codes = restart_dead_codes
        self.dead_code_threshold = dead_code_threshold
        self.fresh_usage = max(1.0, dead_code_threshold)

        codebook = torch.empty(codebook_size, embed_dim).uniform_(
            -1.0 / codebook_size, 1.0 / codebook_size
        )
        if use_ema:
            self.register_buffer("codebook", codebook)
            self.register_buffer("embed_sum", codebook * self.fresh_usage)
        else:
            self.codebook = torch.nn.Parameter(codebook)
        self.register_buffer("cluster_size", torch.full((codebook_size,), self.fresh_usage))

    def codes(self) -> torch.Tensor:
        """The (K, D) code vectors used for lookup (unit-normalised when ``l2_normalize``)."""
        return F.normalize(self.codebook, dim=1) if self.l2_normalize else self.codebook

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, RegularizerOutput]:
        self.check_moments(h)
        b, _, height, width = h.shape
        z = self._flatten(h)
        codes = self.codes()
        indices = self._nearest(z, codes)
        z_q = codes[indices]

        loss = self.beta * F.mse_loss(z, z_q.detach())
        if not self.use_ema:
            loss = loss + F.mse_loss(z_q, z.detach())
        if self.training:
            self._update_statistics(z.detach(), indices)

        z_q = z_q.detach() + (z - z.detach())  # exact code values forward, identity backward
        z_q = rearrange(z_q, "(b h w) d -> b d h w", b=b, h=height, w=width)
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        probs = counts / counts.sum()
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
        log = {
            "vq_loss": loss.detach(),
            "perplexity": entropy.exp(),
            "codebook_usage": (counts > 0).float().mean(),
        }
        return z_q, RegularizerOutput(loss=loss, log=log)

    @torch.no_grad()
    def quantize_indices(self, h: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) long for latents (B, D, h, w); no statistics are updated."""
        self.check_moments(h)
        b, _, height, width = h.shape
        indices = self._nearest(self._flatten(h), self.codes())
        return indices.view(b, height, width)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, h, w) for indices (B, h, w) in [0, codebook_size)."""
        if indices.ndim != 3 or indices.dtype != torch.long:
            raise ValueError(
                f"indices must be a (B, h, w) long tensor, got {tuple(indices.shape)} "
                f"{indices.dtype}"
            )
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(f"indices must lie in [0, codebook_size={self.codebook_size})")
        return rearrange(self.codes()[indices], "b h w d -> b d h w")

    def _flatten(self, h: torch.Tensor) -> torch.Tensor:
        z = rearrange(h, "b d h w -> (b h w) d")
        return F.normalize(z, dim=1) if self.l2_normalize else z

    @staticmethod
    def _nearest(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """argmin_k ‖z_n − e_k‖² for z (N, D), codes (K, D), in float32 outside autocast."""
        with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
            z, codes = z.float(), codes.float()
            distances = (
                z.pow(2).sum(1, keepdim=True) - 2.0 * z @ codes.t() + codes.pow(2).sum(1)[None]
            )
            return distances.argmin(dim=1)

    @torch.no_grad()
    def _update_statistics(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA of usage (and of the codebook with ``use_ema``), then dead-code restart."""
        z = z.to(self.cluster_size.dtype)
        counts = torch.bincount(indices, minlength=self.codebook_size).to(z.dtype)
        if _distributed():
            dist.all_reduce(counts)
        self.cluster_size.lerp_(counts, 1.0 - self.ema_decay)
        if self.use_ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, z)
            if _distributed():
                dist.all_reduce(sums)
            self.embed_sum.lerp_(sums, 1.0 - self.ema_decay)
            n = self.cluster_size.sum()
            smoothed_size = (
                (self.cluster_size + LAPLACE_EPS) / (n + self.codebook_size * LAPLACE_EPS) * n
            )
            self.codebook.copy_(self.embed_sum / smoothed_size[:, None])
        if self.restart_dead_codes:
            self._restart_dead_codes(z)

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor) -> None:
        """Re-draw codes with cluster_size < threshold from z (N, D); sync-free on GPU."""
        dead = self.cluster_size < self.dead_code_threshold
        draws = z[torch.randint(z.shape[0], (self.codebook_size,), device=z.device)]
        if _distributed():
            dist.broadcast(draws, src=0)
        self.codebook.copy_(torch.where(dead[:, None], draws.to(self.codebook.dtype), self.codebook))
        self.cluster_size.masked_fill_(dead, self.fresh_usage)
        if self.use_ema:
            self.embed_sum.copy_(torch.where(dead[:, None], draws * self.fresh_usage, self.embed_sum))
