"""A semantic encoder of the clean input as a vector condition (Diffusion Autoencoders, LRDM,
InfoDiffusion): z_sem = Enc(x0) (B, embed_dim), trained jointly with the denoiser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.conditioning.base import Embedder
from ldmlab.config.types import PositiveInt
from ldmlab.nn.embeddings import TimestepEmbedder
from ldmlab.nn.normalization import group_norm
from ldmlab.nn.resample import Downsample
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.utils.errors import FieldError

POSTERIORS = ("deterministic", "gaussian")


class SemanticEncoderEmbedder(Embedder):
    """x0 (B, C, H, W) → z_sem (B, embed_dim), a ``"vector"`` condition: the UNet adds a projection
    of it to the time embedding that drives every ResBlock's scale-shift norm (AdaGN).

    Inputs: ``batch[input_key]`` (default ``"z_sem"``) when given (latents from a prior, an
    interpolation, a manipulation), else the encoding of ``batch[source_key]`` (the clean image or
    latent the diffusion model denoises). posterior: ``"deterministic"`` (DiffAE: z = Enc(x0)) or
    ``"gaussian"`` (LRDM / InfoDiffusion: q(z | x0) = N(μ, σ²); training draws z = μ + σ·ε, eval
    uses μ). prior_sampling: generation draws z ~ N(0, I) (``draw``; default: with a Gaussian
    posterior). time_conditioned (LRDM): the encoder also reads
    t (B,) (``batch["t"]``; the representation objective passes its t, generation each step's).
    Architecture: conv_in, per ``ch_mult`` level ``num_res_blocks`` ResBlocks (scale-shift on the
    time embedding when time-conditioned) then a stride-2 downsample, GroupNorm-SiLU, global
    average pool, Linear to embed_dim (2·embed_dim for the Gaussian's μ, log σ²).
    """

    def __init__(
        self,
        in_channels: PositiveInt,
        embed_dim: PositiveInt,
        ch: PositiveInt = 32,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: PositiveInt = 1,
        posterior: str = "deterministic",
        time_conditioned: bool = False,
        input_key: str = "z_sem",
        source_key: str = "image",
        p_uncond: float = 0.0,
        prior_sampling: bool | None = None,
    ) -> None:
        super().__init__(input_key, "vector", p_uncond)
        if posterior not in POSTERIORS:
            raise FieldError("semantic_encoder", "posterior", f"must be one of {POSTERIORS}, got "
                             f"{posterior!r}", "{key}=deterministic (DiffAE) or gaussian")
        if embed_dim < 1:
            raise FieldError("semantic_encoder", "embed_dim", f"must be ≥ 1, got {embed_dim}",
                             "semantic_dim=32")
        self.in_channels, self.embed_dim, self.source_key = in_channels, embed_dim, source_key
        self.posterior_type, self.time_conditioned = posterior, time_conditioned
        self.prior_sampling = posterior == "gaussian" if prior_sampling is None else bool(prior_sampling)
        temb = 4 * ch if time_conditioned else None
        self.time_embed = TimestepEmbedder(ch, temb) if time_conditioned else None
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        blocks: list[nn.Module] = []
        width = ch
        for mult in ch_mult:
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(width, ch * mult, temb, scale_shift=True))
                width = ch * mult
            blocks.append(Downsample(width))
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = group_norm(width)
        self.head = nn.Linear(width, embed_dim * (2 if posterior == "gaussian" else 1))
        self.null_embedding = nn.Parameter(torch.zeros(embed_dim))

    def posterior(
        self, x0: torch.Tensor, t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(μ, log σ²) of q(z | x0[, t]), each (B, embed_dim); log σ² is None when deterministic."""
        if x0.ndim != 4 or x0.shape[1] != self.in_channels:
            raise ValueError(f"the semantic encoder expects batch['{self.source_key}'] of shape (B, "
                             f"{self.in_channels}, H, W), got {tuple(x0.shape)}")
        if self.time_conditioned and t is None:
            raise ValueError("this semantic encoder is time-conditioned (LRDM) and needs t: train it with "
                             "diffusion/objective=representation")
        emb = self.time_embed(t.to(x0.device)) if self.time_embed is not None else None
        h = self.conv_in(x0.to(self.conv_in.weight))
        for block in self.blocks:
            h = block(h, emb) if isinstance(block, ResnetBlock) else block(h)
        out = self.head(F.silu(self.norm_out(h)).mean(dim=(2, 3)))
        if self.posterior_type == "deterministic":
            return out, None
        mean, logvar = out.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode_latent(self, x0: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, embed_dim): μ in eval mode, a reparameterised draw of q(z | x0) in training."""
        mean, logvar = self.posterior(x0, t)
        if logvar is None or not self.training:
            return mean
        return mean + (0.5 * logvar).exp() * torch.randn_like(mean)

    def reads(self) -> set[str]:
        return {self.input_key, self.source_key}

    def inputs(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        if self.input_key in batch:
            return batch[self.input_key]
        if self.source_key in batch:
            return self.encode_latent(batch[self.source_key], batch.get("t"))
        return None

    def draw(self, n: int, seed: int = 0) -> torch.Tensor | None:
        """n draws of the prior N(0, I) (B, embed_dim) on the CPU when ``prior_sampling`` (default: for
        a Gaussian posterior; an MMD-regularised deterministic encoder may set it); None for DiffAE's
        encoder, whose prior is a separate latent DDIM (``first_stage=semantic``)."""
        if not self.prior_sampling:
            return None
        return torch.randn(n, self.embed_dim, generator=torch.Generator().manual_seed(seed))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.embed_dim:
            raise ValueError(f"z_sem must be (B, {self.embed_dim}), got {tuple(z.shape)}")
        return z.to(self.null_embedding)

    def null(self, batch_size: int) -> torch.Tensor:
        return self.null_embedding.expand(batch_size, -1)
