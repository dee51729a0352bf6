"""`make evaluate`: the offline guidance sweep of a trained tiny LDM, and its input checks."""

from __future__ import annotations

import json

import pytest

from ldmlab.evaluate import evaluate
from ldmlab.evaluation.table import read_csv
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config, run_cli
from tests.unit.test_classifier import tiny_classifier_ckpt

TINY = ["sampler=ddim", "sampler.steps=3", "num_samples=20", "num_reference=40", "batch_size=8",
        "metrics.inception=false", "metrics.kid_subset_size=16", "metrics.kid_subsets=10"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """CLI children on the 2 busy cores: one OpenMP thread each avoids spin-wait slowdowns."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_evaluate_sweeps_the_scales_of_a_checkpoint(tiny_ldm_run, fmnist_dir, tmp_path_factory, tmp_path):
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    args = [f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}", "guidance_scales=[1,2,4]",
            f"metrics.classifier_ckpt={classifier}", f"metrics.cache_root={tmp_path / 'cache'}", *TINY]
    out = run_cli("ldmlab.evaluate", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "evaluate" / "latest").resolve()
    rows = read_csv(run / "guidance_sweep.csv")
    assert [(row["guidance_scale"], row["w"]) for row in rows] == [(1.0, 0.0), (2.0, 1.0), (4.0, 3.0)]
    assert all(0 <= row["accuracy_classifier"] <= 1 and row["fid_classifier"] > 0 for row in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["fid_classifier"] == min(row["fid_classifier"] for row in rows)
    assert summary["num_reference"] == 40 and summary["reference"].startswith("fashionmnist-test-32px")
    assert (run / "guidance_sweep.png").stat().st_size > 10_000


def test_missing_checkpoint_exits_2_naming_the_key(tmp_path):
    out = run_cli("ldmlab.evaluate", [f"ckpt={tmp_path / 'nope.ckpt'}", *TINY], tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: ckpt:") and "nope.ckpt" in out.stderr


@pytest.mark.parametrize(("override", "key"), [
    ("guidance_scales=[]", "guidance_scales"),
    ("guidance_scales=[1,-1]", "guidance_scales"),
    ("num_samples=0", "num_samples"),
    ("reference_split=dev", "reference_split"),
])
def test_bad_settings_name_their_key(override, key, tiny_ldm_run, tmp_path):
    cfg = compose_config("evaluate", [f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}", *TINY, override,
                                      f"paths.log_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        evaluate(cfg)
