"""Gaussian statistics of features and the Fréchet distance between two Gaussians, in float64.

FD(N(μ1, Σ1), N(μ2, Σ2)) = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½.

The trace term is computed from symmetric eigendecompositions only: Σ1^½ from ``eigh(Σ1)``
(negative eigenvalues, rounding noise of a PSD matrix, clamped to 0), then the eigenvalues λ of
the symmetric PSD matrix Σ1^½ Σ2 Σ1^½, with tr(·)^½ = Σ sqrt(max(λ, 0)). It equals the usual
tr (Σ1 Σ2)^½ (same eigenvalues) without a non-symmetric square root, so the result is real and
finite for any PSD input, rank-deficient (fewer samples than dimensions) included; it is clamped
at 0, where rounding can leave −1e-12.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GaussianStats:
    """mu: (d,) mean, sigma: (d, d) covariance (n − 1 normalisation, as ``np.cov``), both float64."""

    mu: np.ndarray
    sigma: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.mu)


def gaussian_stats(features: torch.Tensor | np.ndarray) -> GaussianStats:
    """Mean and covariance of ``features`` (N, d), N ≥ 2 rows, computed in float64."""
    x = np.array(features.detach().cpu() if torch.is_tensor(features) else features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (N >= 2, d), got {x.shape}")
    mu = x.mean(axis=0)
    x -= mu  # centred in place: one float64 copy of the features
    return GaussianStats(mu, x.T @ x / (len(x) - 1))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clamped to 0)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between N(a.mu, a.sigma) and N(b.mu, b.sigma); ≥ 0, never NaN."""
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise ValueError(f"statistics of {a.dim}-d and {b.dim}-d features cannot be compared")
    if not all(np.isfinite(x).all() for x in (a.mu, a.sigma, b.mu, b.sigma)):
        raise FloatingPointError("Gaussian statistics hold NaN or Inf: check the features")
    sigma_a, sigma_b = _symmetric(a.sigma), _symmetric(b.sigma)
    root_a = _psd_sqrt(sigma_a)
    inner = np.linalg.eigvalsh(_symmetric(root_a @ sigma_b @ root_a))
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    diff = a.mu - b.mu
    return max(float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_sqrt), 0.0)


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    return (matrix + matrix.T) / 2
