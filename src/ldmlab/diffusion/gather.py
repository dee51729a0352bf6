"""Index per-timestep tables by a batch of timesteps."""

from __future__ import annotations

from torch import Tensor


def gather(values: Tensor, t: Tensor, ndim: int) -> Tensor:
    """``values[t]`` reshaped to broadcast against a tensor with ``ndim`` dimensions.

    values: (T,) table; t: (B,) long timesteps on the same device → (B, 1, ..., 1) with
    ``ndim`` dimensions in total.
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}; pass one step per sample")
    return values[t].reshape(-1, *([1] * (ndim - 1)))
