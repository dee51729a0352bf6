"""Linear probe and active units against closed forms."""

from __future__ import annotations

import math

import torch

from ldmlab.evaluation.probe import active_units, linear_probe


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def two_gaussians(n: int, delta: float, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes 0/1 at ∓delta/2 along the first axis, unit covariance in ``dim`` dimensions."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    z = torch.randn(n, dim, generator=g, dtype=torch.float64)
    z[:, 0] += (y.double() - 0.5) * delta
    return z, y


def test_probe_reaches_the_bayes_accuracy_and_auroc_of_two_gaussians():
    delta = 2.0
    train_z, train_y = two_gaussians(10000, delta, 4, 0)
    test_z, test_y = two_gaussians(10000, delta, 4, 1)
    stats = linear_probe(train_z, train_y, test_z, test_y, 2)
    # Bayes accuracy Φ(Δ/2) = 0.8413; AUROC of the linear score Φ(Δ/√2) = 0.9214 (std errors ≤ 0.004)
    assert abs(stats["accuracy"] - normal_cdf(delta / 2)) < 0.012, stats
    assert abs(stats["auroc"] - normal_cdf(delta / math.sqrt(2))) < 0.01, stats


def test_probe_of_noise_is_at_chance():
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(6000, 8, generator=g), torch.randint(0, 10, (6000,), generator=g)
    stats = linear_probe(z[:4000], y[:4000], z[4000:], y[4000:], 10)
    assert abs(stats["accuracy"] - 0.1) < 0.03 and abs(stats["auroc"] - 0.5) < 0.03, stats


def test_active_units_count_dimensions_that_vary_over_the_data():
    g = torch.Generator().manual_seed(3)
    means = torch.cat([torch.randn(5000, 3, generator=g), 0.05 * torch.randn(5000, 2, generator=g)], dim=1)
    assert active_units(means) == 3  # var 1 vs var 0.0025 < 0.01
    assert active_units(means, threshold=0.001) == 5
