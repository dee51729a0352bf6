"""What the transformer denoisers (DiT, U-ViT) share: patch tokens in, patch tokens out.

A latent (B, C, h, w) with ``concat`` channels appended becomes (h/p)·(w/p) tokens of width
``hidden_size`` plus a position embedding (fixed 2-D sin-cos or learned); the output tokens
unpatchify to (B, out_channels, h, w). The nets are built for one latent size ``input_size``
(as the DiT paper's are): the position table and the token count depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ldmlab.backbones.base import Denoiser, check_cond_entry, check_context_mask
from ldmlab.nn.patches import PatchEmbed, sincos_2d, unpatchify
from ldmlab.utils.errors import FieldError

POS_EMBEDS = ("sincos", "learned")
TIME_FREQUENCIES = 256  # sinusoidal timestep features before the time MLP (DiT's)


class PatchDenoiser(Denoiser):
    """Base of the patch transformers; ``forward`` is the subclass's.

    ``cond`` may hold ``"crossattn"`` (B, L, context_dim) with ``"crossattn_mask"`` (B, L) bool,
    ``"vector"`` (B, vector_dim) and ``"concat"`` (B, concat_channels, h, w); exactly the keys
    the net was built for. ``gradient_checkpointing`` recomputes each block in the backward pass.
    """

    X_LAYOUT, X_HINT = "h, w", "set backbone.in_channels to the latent channel count"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int,
        patch_size: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        context_dim: int | None,
        vector_dim: int | None,
        concat_channels: int,
        pos_embed: str,
        gradient_checkpointing: bool,
    ) -> None:
        super().__init__(in_channels, out_channels, context_dim, vector_dim, concat_channels)
        self.input_size, self.patch_size, self.hidden_size = input_size, patch_size, hidden_size
        self.depth, self.num_heads = depth, num_heads
        self.gradient_checkpointing = gradient_checkpointing
        self._check_config(pos_embed)
        self.patch_embed = PatchEmbed(in_channels + concat_channels, hidden_size, patch_size)
        grid = input_size // patch_size
        if pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_2d(hidden_size, grid, grid)[None], persistent=False)
        else:
            self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, hidden_size) * 0.02)

    @property
    def num_tokens(self) -> int:
        """Patch tokens per image: (input_size / patch_size)²."""
        return (self.input_size // self.patch_size) ** 2

    def _patch_tokens(self, x: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """x (B, C, h, w) [+ concat] → (B, N, hidden_size) patch tokens with positions."""
        if self.concat_channels:
            x = torch.cat([x, cond["concat"]], dim=1)
        return self.patch_embed(x) + self.pos_embed

    def _image(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, p·p·out_channels) → (B, out_channels, input_size, input_size)."""
        side = self.input_size
        return unpatchify(tokens, self.patch_size, self.out_channels, side, side)

    def _run(self, block: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """``block(*args)``, recomputed in the backward pass under gradient checkpointing."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _check_size(self, h: int, w: int) -> None:
        if (h, w) != (self.input_size, self.input_size):
            raise FieldError(
                "backbone", "input_size", f"is {self.input_size}, but the latents are {h}x{w}",
                f"{{key}}={h} (the latent side: data resolution / first-stage downsampling)"
                if h == w else "use square latents",
            )

    def _check_cond(self, cond: dict[str, torch.Tensor], b: int, h: int, w: int) -> None:
        check_cond_entry(cond, "crossattn", "backbone.context_dim", self.context_dim,
                         (b, None, self.context_dim))
        check_cond_entry(cond, "vector", "backbone.vector_dim", self.vector_dim, (b, self.vector_dim))
        check_cond_entry(cond, "concat", "backbone.concat_channels", self.concat_channels,
                         (b, self.concat_channels, h, w))
        if "crossattn_mask" in cond:
            check_context_mask(cond)

    def _check_config(self, pos_embed: str) -> None:
        """Fail early with one message naming the offending ``backbone`` key."""
        positive = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                    "input_size": self.input_size, "patch_size": self.patch_size,
                    "hidden_size": self.hidden_size, "depth": self.depth, "num_heads": self.num_heads,
                    "context_dim": self.context_dim or 1, "vector_dim": self.vector_dim or 1}
        for field, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FieldError("backbone", field, f"must be a positive integer, got {value!r}",
                                 "e.g. {key}=" + ("2" if field == "patch_size" else "4"))
        if isinstance(self.concat_channels, bool) or self.concat_channels < 0:
            raise FieldError("backbone", "concat_channels", f"must be ≥ 0, got {self.concat_channels}",
                             "{key}=0")
        if self.input_size % self.patch_size:
            raise FieldError("backbone", "patch_size",
                             f"is {self.patch_size}, which does not divide the latent side {self.input_size}",
                             "use a divisor of the latent side, e.g. {key}=2")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise FieldError("backbone", "num_heads",
                             f"is {self.num_heads}; hidden_size {self.hidden_size} must split into heads of "
                             "an even width", "a divisor of hidden_size, e.g. {key}=4 with hidden_size=128")
        if pos_embed not in POS_EMBEDS:
            raise FieldError("backbone", "pos_embed", f"is {pos_embed!r}, not one of {list(POS_EMBEDS)}",
                             "{key}=sincos")
        if pos_embed == "sincos" and self.hidden_size % 4:
            raise FieldError("backbone", "hidden_size",
                             f"is {self.hidden_size}; sin-cos positions need a multiple of 4",
                             "{key}=128, or backbone.pos_embed=learned")
