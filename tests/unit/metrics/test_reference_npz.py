"""ADM reference-batch .npz: written and read back exactly, scoring against it equals scoring against
the images, the evaluator's writer, and unreadable files refused without unpickling anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.metrics.feature_cache import cache_path
from ldmlab.metrics.feature_network import InceptionFeatures
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.frechet import GaussianStats, gaussian_stats
from ldmlab.metrics.reference_npz import read_reference_npz, write_reference_npz
from ldmlab.metrics.reference_stats import ReferenceSet
from ldmlab.utils.errors import ConfigError

COUNT = 65  # FID on the 64-d layer needs more images than dimensions
KID = {"kid_subset_size": 30, "kid_subsets": 10}


def _random_stats(dim: int, seed: int) -> GaussianStats:
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(dim, dim))
    return GaussianStats(rng.normal(size=dim), factor @ factor.T / dim)


def test_round_trip_is_exact_and_in_adm_layout(tmp_path):
    pool, spatial = _random_stats(2048, 0), _random_stats(2023, 1)
    images = torch.randint(0, 256, (5, 1, 8, 6), dtype=torch.uint8)
    path = write_reference_npz(tmp_path / "ref.npz", pool, spatial, images, count=50000)
    with np.load(path, allow_pickle=False) as raw:
        assert set(raw.files) == {"mu", "sigma", "mu_s", "sigma_s", "arr_0", "num_images"}
        assert raw["arr_0"].shape == (5, 8, 6, 3) and raw["arr_0"].dtype == np.uint8  # NHWC RGB
        assert raw["sigma"].dtype == np.float64
    read = read_reference_npz(path)
    for given, back in ((pool, read.pool), (spatial, read.spatial)):
        np.testing.assert_array_equal(back.mu, given.mu)
        np.testing.assert_array_equal(back.sigma, given.sigma)
    assert read.count == 50000 and read.image_count == 5 and read.name.startswith("ref-")
    assert torch.equal(read.images(), images.expand(-1, 3, -1, -1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.npz"]  # no temporary left behind


def test_unreadable_files_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    cases = {
        "absent.npz": "does not exist",
        "objects.npz": {"mu": np.array([Payload()], dtype=object), "sigma": np.eye(1)},
        "half.npz": {"mu": np.zeros(3)},
        "floats.npz": {"arr_0": np.zeros((2, 4, 4, 3), dtype=np.float32)},
        "not_a_zip.npz": b"just bytes",
    }
    expected = {"absent.npz": "does not exist", "objects.npz": "not a readable .npz",
                "half.npz": "mu without sigma", "floats.npz": "not uint8", "not_a_zip.npz": "not a readable"}
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, dict):
            np.savez(path, **content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        with pytest.raises(ConfigError, match=f"^metrics.reference_stats: .*{expected[name]}"):
            read_reference_npz(path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def fmnist(fmnist_dir) -> torch.Tensor:
    datamodule = FashionMNISTDataModule(str(fmnist_dir))
    datamodule.setup()
    return torch.stack([datamodule.test_set[i]["image"] for i in range(2 * COUNT)])


def test_scoring_against_the_npz_equals_scoring_against_the_images(fmnist, tmp_path):
    """FID from the file's mu/sigma, KID and precision/recall from the features of its arr_0. The
    generated side is any feature rows (score() takes features): random ones save Inception time."""
    reference = ReferenceSet.from_images("fashionmnist", "test", fmnist[:COUNT])
    features = {"inception/pool": torch.rand(COUNT, 64, generator=torch.Generator().manual_seed(1))}
    cache = tmp_path / "cache"
    plain = FidelityEvaluator(reference, fid_feature_layer="64", cache_root=str(cache), **KID)
    expected = plain.score(features)
    pool = load_file(cache_path(cache, reference.name, plain.networks[0], "pool"))["features"]
    path = write_reference_npz(tmp_path / "fmnist.npz", gaussian_stats(pool), images=reference.images,
                               count=COUNT)
    from_file = FidelityEvaluator(reference, fid_feature_layer="64", reference_stats=str(path),
                                  cache_root=str(cache), **KID)
    assert from_file.score(features) == expected
    assert set(expected) == {"fid_inception", "kid_inception", "kid_inception_std", "precision_inception",
                             "recall_inception"}
    provenance = from_file.provenance()
    assert provenance["num_reference"] == COUNT and provenance["reference"].startswith("fmnist-")


def test_the_evaluator_writes_its_references_statistics(fmnist, tmp_path):
    reference = ReferenceSet.from_images("fashionmnist", "test", fmnist[:4])
    evaluator = FidelityEvaluator(reference, fid_feature_layer="2048", sfid=True, cache_root=str(tmp_path))
    path = evaluator.write_reference_npz(tmp_path / "ref.npz", with_images=True)
    read = read_reference_npz(path)
    features = evaluator.networks[0](reference.images.expand(-1, 3, -1, -1))
    for name, stats in (("pool", read.pool), ("spatial", read.spatial)):
        expected = gaussian_stats(features[name])
        np.testing.assert_allclose(stats.mu, expected.mu, rtol=1e-12)
        np.testing.assert_allclose(stats.sigma, expected.sigma, rtol=1e-10, atol=1e-12)
    assert read.count == read.image_count == 4
    cheap = FidelityEvaluator(reference, fid_feature_layer="64", cache_root=str(tmp_path))
    with pytest.raises(ConfigError, match="metrics.fid_feature_layer: ADM reference statistics"):
        cheap.write_reference_npz(tmp_path / "other.npz")
    assert isinstance(cheap.networks[0], InceptionFeatures) and not Path(tmp_path / "other.npz").exists()
