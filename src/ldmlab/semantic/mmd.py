"""Maximum mean discrepancy between two samples (InfoVAE's / WAE's divergence D(q(z) ‖ p(z)))."""

from __future__ import annotations

import torch
from torch import Tensor

KERNELS = ("imq", "rbf")


def kernel_matrix(x: Tensor, y: Tensor, kernel: str, scale: float) -> Tensor:
    """k(x_i, y_j) (N, M) for x (N, d), y (M, d), both positive definite:
    ``imq``: C / (C + ‖x − y‖²) with C = scale; ``rbf``: exp(−‖x − y‖² / (2·scale))."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    sq = torch.cdist(x, y).square()
    return scale / (scale + sq) if kernel == "imq" else torch.exp(-sq / (2.0 * scale))


def mmd2(x: Tensor, y: Tensor, kernel: str = "imq", scale: float | None = None) -> Tensor:
    """Unbiased estimate of MMD²(P, Q) from x (N, d) ~ P and y (M, d) ~ Q, N, M ≥ 2:
    mean_{i≠i'} k(x_i, x_i') + mean_{j≠j'} k(y_j, y_j') − 2·mean k(x_i, y_j). ``scale`` defaults
    to 2·d (InfoVAE's choice for the IMQ kernel against N(0, I))."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd2 expects (N, d) and (M, d) samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("mmd2 needs at least 2 samples on each side")
    scale = 2.0 * x.shape[1] if scale is None else scale
    n, m = len(x), len(y)
    kxx, kyy = kernel_matrix(x, x, kernel, scale), kernel_matrix(y, y, kernel, scale)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2.0 * kernel_matrix(x, y, kernel, scale).mean()
