"""Time-conditional MLP denoiser for vector latents (a "latent DDIM" over z_sem, as in DiffAE).

Layout in the spirit of Diffusion Autoencoders' latent DDIM (Preechakul et al. 2022): input
Linear → ``num_layers`` × (Linear on [h, x_in] → LayerNorm → FiLM from the time (+ vector)
embedding → SiLU → dropout) → zero-initialised Linear, so the net outputs 0 at init. Every
hidden layer sees the input vector again through the skip-concatenation. The engine treats a
vector latent z (B, D) as an image (B, D, 1, 1), which is what ``forward`` takes and returns.
"""

from __future__ import annotations

import torch
from torch import nn

from ldmlab.backbones.base import Denoiser, check_cond_entry
from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.nn.embeddings import TimestepEmbedder


class FiLMBlock(nn.Module):
    """[h (B, width), x_in (B, skip)] → Linear → LayerNorm → ·(1 + scale) + shift → SiLU → dropout."""

    def __init__(self, width: int, skip: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(width + skip, width)
        self.norm = nn.LayerNorm(width)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, x_in: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """h (B, width), x_in (B, skip), emb (B, emb_dim) → (B, width)."""
        scale, shift = self.film(emb).chunk(2, dim=-1)
        h = self.norm(self.linear(torch.cat([h, x_in], dim=-1)))
        return self.dropout(nn.functional.silu(h * (1 + scale) + shift))


class MLPDenoiser(Denoiser):
    """Denoiser ``forward(x (B, in_channels, 1, 1), t (B,), cond) → (B, out_channels, 1, 1)``.

    ``cond`` may hold only ``"vector"`` (B, vector_dim), added to the time embedding after a
    Linear; it must be present exactly when ``vector_dim`` is set. ``context_dim`` and
    ``concat_channels`` exist for ``Conditioner.check_compatible`` and must stay None / 0.
    """

    X_LAYOUT, X_HINT = "1, 1", "set backbone.in_channels to the latent dim D"

    def __init__(
        self,
        in_channels: PositiveInt,
        out_channels: PositiveInt,
        model_channels: PositiveInt = 512,
        num_layers: PositiveInt = 6,
        vector_dim: PositiveInt | None = None,
        dropout: float = 0.0,
        context_dim: PositiveInt | None = None,
        concat_channels: NonNegativeInt = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, context_dim, vector_dim, concat_channels)
        self.model_channels, self.num_layers = model_channels, num_layers
        self._check_config(dropout)

        self.time_embed = TimestepEmbedder(model_channels, model_channels)
        self.vector_embed = nn.Linear(vector_dim, model_channels) if vector_dim else None
        self.input_proj = nn.Linear(in_channels, model_channels)
        self.blocks = nn.ModuleList(
            FiLMBlock(model_channels, in_channels, model_channels, dropout) for _ in range(num_layers)
        )
        self.out = nn.Linear(model_channels, out_channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        cond, emb = self._embed(x, t, cond)
        x_in = x.flatten(start_dim=1)
        h = self.input_proj(x_in)
        for block in self.blocks:
            h = block(h, x_in, emb)
        return self.out(h)[:, :, None, None]

    def _check_size(self, h: int, w: int) -> None:
        if (h, w) != (1, 1):
            raise ValueError(
                f"the mlp denoiser works on vector latents (h = w = 1), got {h}x{w}; use a "
                "(D, 1, 1) latent shape, or backbone=small for spatial latents"
            )

    def _check_cond(self, cond: dict[str, torch.Tensor], b: int, h: int, w: int) -> None:
        spatial = {"crossattn": "backbone.context_dim", "crossattn_mask": "backbone.context_dim",
                   "concat": "backbone.concat_channels"}
        for key, config_key in spatial.items():
            if key in cond:
                raise ValueError(
                    f"cond['{key}'] given, but the mlp denoiser takes vector conditions only "
                    f"({config_key} must stay unset); give the conditioner vector embedders, or "
                    "use backbone=small"
                )
        check_cond_entry(cond, "vector", "backbone.vector_dim", self.vector_dim, (b, self.vector_dim))

    def _check_config(self, dropout: float) -> None:
        """Fail early with one message naming the offending ``backbone.*`` key."""
        positive = {
            "backbone.in_channels": self.in_channels,
            "backbone.out_channels": self.out_channels,
            "backbone.model_channels": self.model_channels,
            "backbone.num_layers": self.num_layers,
            "backbone.vector_dim": 1 if self.vector_dim is None else self.vector_dim,
        }
        for key, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer (null where optional), got {value!r}")
        if self.context_dim is not None:
            raise ValueError(
                f"backbone.context_dim={self.context_dim}, but the mlp denoiser takes vector conditions "
                "only (no cross-attention); set backbone.context_dim: null with a vector conditioner "
                "(conditioner=class_vector / none), or use backbone=small"
            )
        if self.concat_channels != 0:
            raise ValueError(
                f"backbone.concat_channels={self.concat_channels}, but the mlp denoiser takes vector "
                "conditions only (no concat inputs); set backbone.concat_channels: 0, or use backbone=small"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"backbone.dropout must lie in [0, 1), got {dropout}")
