"""What every denoiser network shares: its conditioning sizes, the checks and embedding of its inputs."""

from __future__ import annotations

import torch
from torch import nn

COND_KEYS = ("crossattn", "crossattn_mask", "vector", "concat")


class Denoiser(nn.Module):
    """Base of the denoisers ``forward(x (B, in_channels, h, w), t (B,), cond) → (B, out, h, w)``.

    ``_embed`` checks the inputs and embeds t (+ the vector condition). ``_check_inputs`` checks
    x's channels, t's shape and cond's keys; a subclass states its latent layout (``X_LAYOUT``,
    ``X_HINT``) and checks the size (``_check_size``) and the cond entries (``_check_cond``).
    """

    time_embed: nn.Module
    vector_embed: nn.Module | None
    X_LAYOUT: str
    X_HINT: str

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        context_dim: int | None,
        vector_dim: int | None,
        concat_channels: int,
    ) -> None:
        """Keep the sizes ``Conditioner.check_compatible`` compares with the conditioner's."""
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.context_dim, self.vector_dim, self.concat_channels = context_dim, vector_dim, concat_channels

    def _embed(
        self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Check the inputs; return cond ({} for None) and the time embedding (B, emb_dim), plus
        ``vector_embed(cond["vector"])`` where the net takes a vector."""
        cond = {} if cond is None else cond
        self._check_inputs(x, t, cond)
        emb = self.time_embed(t)
        if self.vector_embed is not None:
            emb = emb + self.vector_embed(cond["vector"].to(emb.dtype))
        return cond, emb

    def _check_inputs(
        self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must be (B, backbone.in_channels={self.in_channels}, {self.X_LAYOUT}), got "
                f"{tuple(x.shape)}; {self.X_HINT}"
            )
        b, _, h, w = x.shape
        self._check_size(h, w)
        if t.shape != (b,):
            raise ValueError(f"t must have shape (B,)=({b},), got {tuple(t.shape)}")
        unknown = sorted(set(cond) - set(COND_KEYS))
        if unknown:
            raise ValueError(f"cond has unknown keys {unknown}; allowed keys are {list(COND_KEYS)}")
        self._check_cond(cond, b, h, w)

    def _check_size(self, h: int, w: int) -> None:
        """Raise unless the net takes latents of spatial size h × w."""
        raise NotImplementedError

    def _check_cond(self, cond: dict[str, torch.Tensor], b: int, h: int, w: int) -> None:
        """Raise unless ``cond`` (known keys only) holds what the net was built for, in shape."""
        raise NotImplementedError


def check_cond_entry(
    cond: dict[str, torch.Tensor],
    key: str,
    config_key: str,
    built: int | None,
    shape: tuple[int | None, ...],
) -> None:
    """Raise unless ``cond[key]`` is present exactly when the net was ``built`` for it (its
    ``config_key`` is set) and then has ``shape`` (None = any size)."""
    if key in cond and not built:
        raise ValueError(
            f"cond['{key}'] given but {config_key}={built}; set {config_key} to match "
            "the conditioner (Conditioner.check_compatible tells which value)"
        )
    if built and key not in cond:
        raise ValueError(
            f"{config_key}={built} but cond has no '{key}'; add a '{key}' embedder to "
            f"the conditioner or unset {config_key}"
        )
    if key in cond:
        _check_shape(f"cond['{key}']", cond[key], shape, config_key)


def _check_shape(
    name: str, tensor: torch.Tensor, shape: tuple[int | None, ...], config_key: str
) -> None:
    """Raise if ``tensor.shape`` differs from ``shape`` (None = any size)."""
    if tensor.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(tensor.shape, shape, strict=True)
    ):
        pretty = tuple("*" if s is None else s for s in shape)
        raise ValueError(
            f"{name} must have shape {pretty}, got {tuple(tensor.shape)}; check {config_key} "
            "against the conditioner and the batch size against x"
        )


def check_context_mask(cond: dict[str, torch.Tensor]) -> None:
    """Raise unless ``cond["crossattn_mask"]`` is a bool (B, L) mask of ``cond["crossattn"]`` that
    keeps ≥ 1 position per sample (that last check only on CPU and eager: elsewhere it is a host
    sync, or a graph break)."""
    mask = cond["crossattn_mask"]
    if "crossattn" not in cond:
        raise ValueError("cond['crossattn_mask'] given without cond['crossattn']")
    if mask.dtype != torch.bool or mask.shape != cond["crossattn"].shape[:2]:
        raise ValueError(
            f"cond['crossattn_mask'] must be bool (B, L)={tuple(cond['crossattn'].shape[:2])}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    if mask.device.type == "cpu" and not torch.compiler.is_compiling() and not bool(mask.any(dim=1).all()):
        raise ValueError("cond['crossattn_mask'] masks every position of some sample; keep ≥ 1")
