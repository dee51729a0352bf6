"""Fréchet distance by symmetric eigendecompositions: closed forms, scipy, torch-fidelity, singular cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

from ldmlab.metrics.frechet import GaussianStats, frechet_distance, gaussian_stats


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _correlated(count: int, dim: int, seed: int) -> np.ndarray:
    """(count, dim) samples of a correlated Gaussian with a non-zero mean."""
    rng = _rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return rng.normal(size=(count, dim)) @ mixing + rng.normal(size=dim)


def test_statistics_are_numpy_mean_and_cov_in_float64():
    features = torch.from_numpy(_correlated(50, 6, seed=1)).float()
    stats = gaussian_stats(features)
    assert stats.mu.dtype == stats.sigma.dtype == np.float64
    reference = features.double().numpy()
    np.testing.assert_allclose(stats.mu, reference.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(reference, rowvar=False), rtol=1e-10, atol=1e-14)


def test_identical_gaussians_are_at_distance_zero():
    stats = gaussian_stats(_correlated(200, 64, seed=2))
    scale = 2 * np.trace(stats.sigma)
    assert 0 <= frechet_distance(stats, stats) <= 1e-9 * scale


def test_commuting_covariances_match_the_closed_form():
    """Σ1 = diag(a), Σ2 = diag(b): FD = ‖μ1 − μ2‖² + Σ (√a − √b)²."""
    rng = _rng(3)
    a, b = rng.uniform(0.1, 4, 32), rng.uniform(0.1, 4, 32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    measured = frechet_distance(GaussianStats(mu1, np.diag(a)), GaussianStats(mu2, np.diag(b)))
    assert measured == pytest.approx(expected, rel=1e-12)


def test_random_well_conditioned_pair_matches_scipy_sqrtm():
    one, two = gaussian_stats(_correlated(400, 48, seed=4)), gaussian_stats(_correlated(400, 48, seed=5))
    covmean = linalg.sqrtm(one.sigma @ two.sigma)
    diff = one.mu - two.mu
    expected = diff @ diff + np.trace(one.sigma) + np.trace(two.sigma) - 2 * np.trace(covmean).real
    assert frechet_distance(one, two) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(two, one) == pytest.approx(expected, rel=1e-10)  # symmetric


def test_fewer_samples_than_dimensions_stay_finite_and_non_negative():
    one, two = gaussian_stats(_correlated(5, 40, seed=6)), gaussian_stats(_correlated(7, 40, seed=7))
    assert np.linalg.matrix_rank(one.sigma) == 4 and np.linalg.matrix_rank(two.sigma) == 6
    for a, b in ((one, two), (two, one), (one, one)):
        distance = frechet_distance(a, b)
        assert np.isfinite(distance) and distance >= 0


def test_exactly_singular_covariances_match_the_closed_form():
    """Rank one, not commuting: Σ1 = uuᵀ, Σ2 = vvᵀ ⇒ Σ1^½ Σ2 Σ1^½ = (u·v)² uuᵀ/‖u‖², so
    FD = ‖Δμ‖² + ‖u‖² + ‖v‖² − 2|u·v|; and a shared eigenbasis with zero eigenvalues in both.
    Tolerance 1e-7: a zero eigenvalue comes out of eigh as ±ε‖Σ‖, and √ turns that into √ε‖Σ‖^½."""
    rng = _rng(8)
    u, v, mu1, mu2 = (rng.normal(size=24) for _ in range(4))
    expected = np.sum((mu1 - mu2) ** 2) + u @ u + v @ v - 2 * abs(u @ v)
    measured = frechet_distance(GaussianStats(mu1, np.outer(u, u)), GaussianStats(mu2, np.outer(v, v)))
    assert measured == pytest.approx(expected, rel=1e-7)

    basis, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    a, b = rng.uniform(0.5, 3, 24), rng.uniform(0.5, 3, 24)
    a[:10], b[5:15] = 0, 0  # rank 14 each, overlapping null spaces
    sigma_a, sigma_b = (basis * a) @ basis.T, (basis * b) @ basis.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(GaussianStats(mu1, sigma_a), GaussianStats(mu2, sigma_b)) == pytest.approx(
        expected, rel=1e-7)


def test_2048_dimensional_fid_matches_torch_fidelity():
    """Random 2048-d features (more rows than dimensions): torch-fidelity's eigvals(Σ1·Σ2) route."""
    rng = _rng(9)
    one = torch.from_numpy(rng.normal(size=(2100, 2048)).astype(np.float32))
    two = torch.from_numpy((rng.normal(size=(2100, 2048)) * 1.1 + 0.05).astype(np.float32))
    theirs = fid_statistics_to_metric(fid_features_to_statistics(one), fid_features_to_statistics(two),
                                      verbose=False)[KEY_METRIC_FID]
    ours = frechet_distance(gaussian_stats(one), gaussian_stats(two))
    print(f"2048-d FID: ours {ours:.10g}, torch-fidelity {theirs:.10g}")
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_refusals():
    good = GaussianStats(np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="3-d and 2-d"):
        frechet_distance(good, GaussianStats(np.zeros(2), np.eye(2)))
    with pytest.raises(FloatingPointError, match="NaN"):
        frechet_distance(good, GaussianStats(np.array([0, np.nan, 0]), np.eye(3)))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))
