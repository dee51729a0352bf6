"""`make reference`: a data split's Inception statistics as an ADM reference batch, its refusals, and
`make evaluate` scoring against the written file exactly as against the data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import ldmlab
from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.evaluation.reference import load_reference
from ldmlab.evaluation.table import read_csv
from ldmlab.metrics.feature_network import SPATIAL_DIM, InceptionFeatures
from ldmlab.metrics.frechet import gaussian_stats
from ldmlab.metrics.inception import inception_weights_path
from tests.conftest import run_forked


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_reference_writes_the_adm_layout_of_the_split(fmnist_dir, tmp_path):
    out, cache = tmp_path / "refs" / "fmnist_test.npz", tmp_path / "cache"
    args = ["reference_split=test", f"out={out}", "include_images=true", f"metrics.cache_root={cache}"]
    run = run_forked("ldmlab.commands.reference", [*args, "num_reference=6"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"wrote {out} (sha256 {digest})" in run.stdout

    images, _ = load_reference(FashionMNISTDataModule(str(fmnist_dir)), "test", 6)
    network = InceptionFeatures(inception_weights_path(), "2048", spatial=True)
    features = network(images.images.expand(-1, 3, -1, -1))  # one batch, as the command's
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["arr_0", "mu", "mu_s", "num_images", "sigma", "sigma_s"]
        for (mu, sigma), name in ((("mu", "sigma"), "pool"), (("mu_s", "sigma_s"), "spatial")):
            stats = gaussian_stats(features[name])
            assert np.array_equal(npz[mu], stats.mu) and np.array_equal(npz[sigma], stats.sigma)
        assert npz["sigma"].shape == (2048, 2048) and npz["sigma_s"].shape == (SPATIAL_DIM, SPATIAL_DIM)
        assert np.array_equal(npz["arr_0"], images.images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy())
        assert npz["num_images"] == 6

    summary = json.loads((tmp_path / "reference" / "latest" / "summary.json").read_text())
    assert summary["sha256"] == digest and summary["file"] == str(out) and summary["split"] == "test"
    assert summary["provenance"] == {"num_reference": 6, "reference": images.name,
                                     "feature_networks": f"{network.identity()}:pool+spatial",
                                     "ldmlab_version": ldmlab.__version__}
    assert images.name.startswith("fashionmnist-test-32px-1ch-n6-")  # + the sha256 of the pixels

    again = run_forked("ldmlab.commands.reference", [*args, "num_reference=4"], tmp_path)
    assert again.returncode == 2 and again.stderr.startswith(f"error: out: {out} holds an earlier reference "
                                                             "batch. Fix: overwrite=true"), again.stderr
    again = run_forked("ldmlab.commands.reference", [*args, "num_reference=4", "overwrite=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    with np.load(out, allow_pickle=False) as npz:
        assert npz["num_images"] == 4 and len(npz["arr_0"]) == 4


@pytest.mark.parametrize(("override", "problem"), [
    ("out=null", "error: out: is not set"),
    ("num_reference=10001", "error: num_reference: 10001 images asked, the test split has 10000"),
    ("reference_split=dev", "error: reference_split: unknown split 'dev'"),
    ("out={tmp}/mine.npz", "error: out: {tmp}/mine.npz is not a reference batch ldmlab wrote; it is never "
                           "replaced. Fix: out={tmp}/mine_2.npz"),
    ("out={tmp}/adm.npz", "error: out: {tmp}/adm.npz is not a reference batch ldmlab wrote"),
    ("out={tmp}/ref", "error: out: {tmp}/ref is not an .npz file name"),
    ("out={tmp}", "error: out: {tmp} is a folder, not a file"),
    ("out={tmp}/mine.npz/ref.npz", "error: out: {tmp}/mine.npz is a file, so {tmp}/mine.npz/ref.npz cannot"),
])
def test_bad_input_is_refused_on_one_line_before_any_feature(override, problem, fmnist_dir, tmp_path):
    """A file of someone else's (bytes, or an ADM batch without ldmlab's num_images) is left as it was."""
    (tmp_path / "mine.npz").write_bytes(b"my results")
    np.savez(tmp_path / "adm.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args = {"reference_split": "test", "num_reference": "6", "out": tmp_path / "new.npz",
            "metrics.cache_root": tmp_path / "cache"}
    key, value = override.format(tmp=tmp_path).split("=")
    args[key] = value
    run = run_forked("ldmlab.commands.reference", [f"{k}={v}" for k, v in args.items()], tmp_path / "logs")
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr[-2000:]
    assert run.stderr.startswith(problem.format(tmp=tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "logs"} == before  # no cache


def _random_features(self: InceptionFeatures, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """A stand-in for the Inception network (same dims and identity): a fixed random map of the
    pixels, so 2049 images cost nothing (the real network's statistics: the test above)."""
    x = images.float().flatten(1) / 255
    weights = torch.randn(x.shape[1], 2048 + SPATIAL_DIM, generator=torch.Generator().manual_seed(0))
    rows = torch.tanh(x @ weights / 8)
    return {"pool": rows[:, :2048]} | ({"spatial": rows[:, 2048:]} if self.spatial else {})


@pytest.mark.slow  # ~3 min on one core: two evaluate runs of 2049 samples (the fewest 2048-d FID takes)
def test_evaluate_against_the_written_file_equals_evaluate_against_the_data(tiny_ldm_run, tmp_path,
                                                                           monkeypatch):
    """FID and sFID (the file's mu/sigma, mu_s/sigma_s), KID and precision/recall (its arr_0) are the
    numbers evaluate gives against the same 2049 test images read from the data, exactly."""
    monkeypatch.setattr(InceptionFeatures, "__call__", _random_features)  # forked commands inherit it
    out = tmp_path / "ref.npz"
    made = run_forked("ldmlab.commands.reference", [
        "reference_split=test", "num_reference=2049", f"out={out}", "include_images=true",
        f"metrics.cache_root={tmp_path / 'reference_cache'}"], tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    scores = {}
    for name, extra in (("data", []), ("file", [f"metrics.reference_stats={out}"])):
        args = [f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}", "guidance_scales=[2]", "sampler=ddim",
                "sampler.steps=2", "num_samples=2049", "num_reference=2049", "reference_split=test",
                "batch_size=1024", "metrics=paper", "metrics.inception_score=null", "metrics.kid_subsets=10",
                f"metrics.cache_root={tmp_path / name}", *extra]
        run = run_forked("ldmlab.commands.evaluate", args, tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        scores[name] = read_csv((tmp_path / "evaluate" / "latest").resolve() / "guidance_sweep.csv")[0]
    metrics = ["fid_inception", "sfid_inception", "kid_inception", "precision_inception", "recall_inception"]
    assert {m: scores["file"][m] for m in metrics} == {m: scores["data"][m] for m in metrics}
    assert min(scores["data"][m] for m in ("fid_inception", "sfid_inception", "kid_inception")) > 0
    reference = json.loads((tmp_path / "reference" / "latest" / "summary.json").read_text())["provenance"]
    assert scores["data"]["reference"] == reference["reference"]  # the same images, by content
    assert scores["file"]["reference"].startswith("ref-") and scores["file"]["num_reference"] == 2049
