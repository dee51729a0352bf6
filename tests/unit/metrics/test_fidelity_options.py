"""FidelityEvaluator options: the presets' metrics, one-line refusals before any sampling (IS without
a classifier head, an .npz that cannot support a metric, FD-DINOv2 without weights), FD-DINOv2's wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ldmlab.metrics import fidelity
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.frechet import GaussianStats, frechet_distance, gaussian_stats
from ldmlab.metrics.reference_npz import write_reference_npz
from ldmlab.metrics.reference_stats import ReferenceSet, to_uint8
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def reference() -> ReferenceSet:
    images = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return ReferenceSet.from_images("noise", "test", images)


def _preset(name: str, reference: ReferenceSet, *overrides: str) -> FidelityEvaluator:
    metrics = compose_config("evaluate", [f"metrics={name}", *overrides]).metrics
    return instantiate(metrics)(reference=reference)


def test_paper_preset_requires_the_inception_score(reference, inception_with_head, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="^metrics.inception_weights: .*no classifier head.*"
                                          "metrics.inception_score=null"):
        _preset("paper", reference)
    monkeypatch.setenv("LDMLAB_CACHE", str(tmp_path))  # the content-addressed copy of with_head
    paper = _preset("paper", reference, f"metrics.inception_weights={inception_with_head}")
    assert paper.metric_names(labelled=False) == [
        "fid_inception", "sfid_inception", "kid_inception", "precision_inception", "recall_inception",
        "is_inception"]
    assert paper.networks[0].dims() == {"pool": 2048, "logits": 1008, "spatial": 2023}


def test_cpu_preset_omits_the_inception_score_without_a_head(reference):
    cpu = _preset("cpu", reference)
    assert cpu.metric_names(labelled=False) == [
        "fid_inception", "kid_inception", "precision_inception", "recall_inception"]


def _stats(dim: int) -> GaussianStats:
    return GaussianStats(np.zeros(dim), np.eye(dim))


def test_an_npz_that_cannot_support_a_metric_is_refused(reference, tmp_path):
    stats_only = write_reference_npz(tmp_path / "stats.npz", _stats(2048), _stats(2023))
    options = {"fid_feature_layer": "2048", "sfid": True, "reference_stats": str(stats_only)}
    with pytest.raises(ConfigError, match="^metrics.reference_stats: .*no arr_0 images.*"
                       "metrics.compute_kid=false metrics.compute_precision_recall=false$"):
        FidelityEvaluator(reference, **options)
    options |= {"compute_kid": False, "compute_precision_recall": False}
    statistics_only = FidelityEvaluator(reference, **options)
    assert statistics_only.metric_names(labelled=False) == ["fid_inception", "sfid_inception"]
    statistics_only.check_counts(2049)  # the reference's count does not matter: its statistics are given
    assert statistics_only.provenance()["num_reference"] == 0  # unknown: no num_images, no arr_0

    pool_only = write_reference_npz(tmp_path / "pool.npz", _stats(2048))
    with pytest.raises(ConfigError, match="^metrics.reference_stats: .*neither mu_s, sigma_s nor arr_0"):
        FidelityEvaluator(reference, fid_feature_layer="2048", sfid=True, reference_stats=str(pool_only),
                          compute_kid=False, compute_precision_recall=False)
    with pytest.raises(ConfigError, match="^metrics.fid_feature_layer: .*2048-d pool statistics.*64-d"):
        FidelityEvaluator(reference, fid_feature_layer="64", reference_stats=str(pool_only),
                          compute_kid=False, compute_precision_recall=False)
    with pytest.raises(ConfigError, match="^metrics.reference_stats: needs the Inception network"):
        FidelityEvaluator(reference, inception=False, reference_stats=str(pool_only))


def test_fd_dinov2_needs_its_weights(reference, tmp_path):
    for weights, problem in ((None, "none is given"), (str(tmp_path / "absent.pth"), "absent.pth does not")):
        with pytest.raises(ConfigError, match=f"^metrics.dinov2_weights: .*{problem}.*fd_dinov2=false$"):
            FidelityEvaluator(reference, inception=False, fd_dinov2=True, dinov2_weights=weights)


class _FakeDINOv2:
    """Stands in for ``DINOv2Features`` (a ViT-L/14 is slow on a CPU): per-channel means and stds."""

    tag = "dinov2"

    def __init__(self, weights_path: Path) -> None:
        self.weights_path = weights_path

    def to(self, device: str) -> _FakeDINOv2:
        return self

    def dims(self) -> dict[str, int]:
        return {"cls": 6}

    def identity(self) -> str:
        return "dinov2-fake@0"

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.float()
        return {"cls": torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)}


def test_fd_dinov2_is_the_frechet_distance_of_the_dinov2_features(reference, tmp_path, monkeypatch):
    monkeypatch.setattr(fidelity, "DINOv2Features", _FakeDINOv2)
    weights = tmp_path / "dinov2_vitl14.pth"
    weights.touch()
    evaluator = FidelityEvaluator(reference, inception=False, fd_dinov2=True, dinov2_weights=str(weights),
                                  cache_root=str(tmp_path / "cache"))
    generated = torch.rand(30, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fake = _FakeDINOv2(weights)
    expected = frechet_distance(gaussian_stats(fake(to_uint8(generated))["cls"]),
                                gaussian_stats(fake(reference.images)["cls"]))
    assert evaluator(generated) == {"fd_dinov2": expected} and expected > 0
    assert evaluator.metric_names(labelled=False) == ["fd_dinov2"]
    assert evaluator.provenance()["feature_networks"] == "dinov2-fake@0:cls"
    with pytest.raises(ConfigError, match="^metrics.num_samples: FD-DINOv2 on 6-d dinov2 features.*"
                                          "metrics.fd_dinov2=false"):
        evaluator(generated[:6])


def test_inception_only_options_need_inception(reference):
    with pytest.raises(ConfigError, match="^metrics.sfid: needs the Inception network.*inception=true"):
        FidelityEvaluator(reference, inception=False, sfid=True)
