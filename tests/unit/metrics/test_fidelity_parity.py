"""The feature-level metrics equal torch-fidelity's image-level ``calculate_metrics`` on the same images
(Inception weights with a classifier head, so the Inception Score is included), and sFID equals an
independent computation (own hook on Mixed_6d.branch1x1, NHWC flattening, numpy cov, scipy sqrtm).

FID/KID/precision-recall at the 64-d layer are compared with torch-fidelity's CLI in
``test_fidelity.py``; here the Inception Score (fast) and the standard 2048-d metrics with sFID on
more images than dimensions (slow: ~4200 Inception passes at 299 px, ~15 min on one CPU core).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_fidelity
from scipy import linalg
from torch_fidelity.metric_fid import KEY_METRIC_FID
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL

from ldmlab.metrics.feature_metrics import inception_score
from ldmlab.metrics.feature_network import InceptionFeatures
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.inception import inception_weights_path
from ldmlab.metrics.reference_stats import ReferenceSet, to_uint8
from tests.unit.metrics.test_inception import _ImageTensors

OPTIONS = {"kid_subset_size": 1000, "kid_subsets": 10, "isc_splits": 4, "batch_size": 50, "seed": 2020}


def _torch_fidelity(generated: torch.Tensor, reference: torch.Tensor | None, weights, layer: str,
                    **metrics: bool) -> dict[str, float]:
    """torch-fidelity's own image-level run (uint8 RGB inputs), no cache."""
    inputs = {"input1": _ImageTensors(generated)}
    if reference is not None:
        inputs["input2"] = _ImageTensors(reference)
    return torch_fidelity.calculate_metrics(
        **inputs, **metrics, feature_extractor="inception-v3-compat",  # its PR default is VGG16
        feature_extractor_weights_path=str(weights), feature_layer_fid=layer,
        feature_layer_kid=layer, feature_layer_prc=layer, kid_subset_size=OPTIONS["kid_subset_size"],
        kid_subsets=OPTIONS["kid_subsets"], isc_splits=OPTIONS["isc_splits"],
        batch_size=OPTIONS["batch_size"], rng_seed=OPTIONS["seed"], cuda=False, cache=False,
        save_cpu_ram=True, verbose=False,
    )


def test_inception_score_matches_torch_fidelity(inception_with_head, tmp_path, monkeypatch):
    monkeypatch.setenv("LDMLAB_CACHE", str(tmp_path))
    weights = inception_weights_path(inception_with_head)
    images = torch.randint(0, 256, (12, 3, 24, 24), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)
    logits = InceptionFeatures(weights, "64", logits=True)(images)["logits"]
    ours = inception_score(logits, OPTIONS["isc_splits"], OPTIONS["seed"])
    theirs = _torch_fidelity(images, None, weights, "64", isc=True)
    print(f"IS: ours {ours}, torch-fidelity {theirs}")
    assert ours == (theirs[KEY_METRIC_ISC_MEAN], theirs[KEY_METRIC_ISC_STD]) and ours[0] > 1.2


def _independent_sfid(gen: np.ndarray, ref: np.ndarray) -> float:
    """ADM's formula: numpy covariances, scipy sqrtm of their product (features constant in both
    sets, if any, add only their squared mean difference and are left out of the product)."""
    diff = gen.mean(axis=0) - ref.mean(axis=0)
    varying = (np.ptp(gen, axis=0) > 0) | (np.ptp(ref, axis=0) > 0)
    sigma_gen, sigma_ref = np.cov(gen[:, varying], rowvar=False), np.cov(ref[:, varying], rowvar=False)
    covmean = linalg.sqrtm(sigma_gen @ sigma_ref)
    return float(diff @ diff + np.trace(sigma_gen) + np.trace(sigma_ref) - 2 * np.trace(covmean).real)


@pytest.mark.slow
def test_2048_metrics_match_torch_fidelity_and_sfid_an_independent_computation(
        inception_with_head, tmp_path, monkeypatch):
    """Uniform-noise images (diverse spatial features: well-conditioned covariances for sqrtm)."""
    monkeypatch.setenv("LDMLAB_CACHE", str(tmp_path))
    count = 2049  # more than the 2048 pool and 2023 spatial dimensions
    noise = torch.rand(2 * count, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reference = ReferenceSet.from_images("noise", "test", noise[:count])
    generated = noise[count:] * 0.8  # lower contrast: a different distribution
    evaluator = FidelityEvaluator(reference, inception_weights=str(inception_with_head),
                                  fid_feature_layer="2048", sfid=True, inception_score=True, cuda=False,
                                  cache_root=str(tmp_path / "cache"), **OPTIONS)
    network = evaluator.networks[0]
    captured = []  # independent sFID features: generated batches first, then the reference's

    def adm_spatial(module, args, out):  # TF mixed_6/conv, NHWC, spatial[..., :7] per image
        captured.append(out.numpy().transpose(0, 2, 3, 1)[..., :7].reshape(len(out), -1))

    network.extractor.Mixed_6d.branch1x1.register_forward_hook(adm_spatial)
    ours = evaluator(generated)
    rows = np.concatenate(captured).astype(np.float64)
    sfid = _independent_sfid(rows[:count], rows[count:])
    print(f"ours {ours}\nindependent sFID {sfid}")
    assert ours["sfid_inception"] == pytest.approx(sfid, rel=1e-5)

    rgb = to_uint8(generated), reference.images
    theirs = _torch_fidelity(*rgb, network.weights_path, "2048", fid=True, kid=True, prc=True, isc=True)
    print(f"torch-fidelity {theirs}")
    assert ours["fid_inception"] == pytest.approx(theirs[KEY_METRIC_FID], rel=1e-5)
    assert ours["kid_inception"] == pytest.approx(theirs[KEY_METRIC_KID_MEAN], rel=1e-4, abs=1e-7)
    assert ours["kid_inception_std"] == pytest.approx(theirs[KEY_METRIC_KID_STD], rel=1e-4, abs=1e-7)
    assert ours["precision_inception"] == theirs[KEY_METRIC_PRECISION]
    assert ours["recall_inception"] == theirs[KEY_METRIC_RECALL]
    assert ours["is_inception"] == pytest.approx(theirs[KEY_METRIC_ISC_MEAN], rel=1e-6)
    assert ours["is_inception_std"] == pytest.approx(theirs[KEY_METRIC_ISC_STD], rel=1e-5, abs=1e-9)
