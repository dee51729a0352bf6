"""`make evaluate`: the offline guidance sweep of a trained tiny LDM, and its input checks."""

from __future__ import annotations

import json
import re
import statistics

import pytest

import ldmlab
from ldmlab.commands.evaluate import evaluate
from ldmlab.evaluation.table import read_csv
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config, run_cli, run_forked
from tests.unit.models.test_classifier import tiny_classifier_ckpt

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
    out = run_cli("ldmlab.commands.evaluate", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "evaluate" / "latest").resolve()
    rows = read_csv(run / "guidance_sweep.csv")
    assert [(row["guidance_scale"], row["w"]) for row in rows] == [(1.0, 0.0), (2.0, 1.0), (4.0, 3.0)]
    assert all(0 <= row["accuracy_classifier"] <= 1 and row["fid_classifier"] > 0 for row in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["fid_classifier"] == min(row["fid_classifier"] for row in rows)
    assert summary["num_reference"] == 40 and summary["reference"].startswith("fashionmnist-test-32px")
    assert [row["nfe"] for row in rows] == [3, 6, 6]  # DDIM-3; CFG at s ≠ 1 is a pass of 2B per step
    assert all(row["num_samples"] == 20 and row["ldmlab_version"] == ldmlab.__version__ for row in rows)
    provenance, best = summary["provenance"], summary["best"]
    assert provenance == {"num_samples": 20, "num_reference": 40, "reference": best["reference"],
                          "feature_networks": best["feature_networks"], "nfe": best["nfe"],
                          "ldmlab_version": ldmlab.__version__, "seeds": [0],
                          "sampler": {"sampler": "ddim", "sampler.steps": 3}, "guidance": "cfg",
                          "guidance_scale": best["guidance_scale"]}
    assert provenance["feature_networks"].startswith("classifier")
    assert (run / "guidance_sweep.png").stat().st_size > 10_000


def test_missing_checkpoint_exits_2_naming_the_key(tmp_path):
    out = run_forked("ldmlab.commands.evaluate", [f"ckpt={tmp_path / 'nope.ckpt'}", *TINY], tmp_path)
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


def test_steps_eta_grid_over_seeds_writes_one_row_per_grid_point(tiny_ldm_run, fmnist_dir, tmp_path_factory,
                                                                  tmp_path):
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    args = [f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}", f"metrics.classifier_ckpt={classifier}",
            f"metrics.cache_root={tmp_path / 'cache'}", *TINY, "grid.steps=[2,4]", "grid.eta=[0,1]",
            "guidance_scales=[3]", "seeds=[0,1]"]
    out = run_forked("ldmlab.commands.evaluate", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "evaluate" / "latest").resolve()
    rows = read_csv(run / "guidance_sweep.csv")
    assert [(r["sampler"], r["sampler.steps"], r["sampler.eta"], r["seeds"]) for r in rows] == [
        ("ddim", steps, eta, 2) for steps in (2, 4) for eta in (0, 1)]
    per_seed = read_csv(run / "guidance_sweep_per_seed.csv")
    assert len(per_seed) == 8 and {r["seed"] for r in per_seed} == {0, 1}
    for row in rows:  # each cell is the mean ± std of its two seeds' rows
        fids = [r["fid_classifier"] for r in per_seed
                if (r["sampler.steps"], r["sampler.eta"]) == (row["sampler.steps"], row["sampler.eta"])]
        assert row["fid_classifier"] == pytest.approx(statistics.fmean(fids))
        assert row["fid_classifier_seed_std"] == pytest.approx(statistics.stdev(fids))
        assert row["fid_classifier_seed_std"] > 0  # the seeds draw different noise
    assert len({r["fid_classifier"] for r in rows}) == 4  # steps and η change the samples
    assert (run / "guidance_sweep.png").stat().st_size > 10_000
    summary = json.loads((run / "summary.json").read_text())
    assert summary["grid"] == {"steps": [2, 4], "eta": [0, 1]} and summary["seeds"] == [0, 1]
    assert summary["best"]["fid_classifier"] == min(r["fid_classifier"] for r in rows)
    best = summary["best"]
    assert f"s=3 with sampler=ddim, steps={best['sampler.steps']}, eta={best['sampler.eta']}" in out.stdout


@pytest.mark.parametrize(("override", "problem"), [
    ("+grid.foo=[1]", "grid.foo: 'foo' is not a setting of the ddim sampler"),
    ("grid.foo=[1]", "grid.foo"),
    ("grid.steps=[]", "grid.steps: must be a non-empty list"),
    ("grid.sampler=[plms]", "grid.sampler: 'plms' is not a sampler option"),
    ("seeds=[]", "seeds: must be distinct non-negative integers"),
])
def test_bad_grids_exit_2_on_one_line(override, problem, tiny_ldm_run, tmp_path):
    out = run_forked("ldmlab.commands.evaluate",
                     [f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}", *TINY, override], tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert out.stderr.startswith("error: ") and problem in out.stderr


def scored_args(tiny_ldm_run, fmnist_dir, tmp_path_factory, tmp_path) -> list[str]:
    """A tiny one-scale evaluate command line with a domain classifier: 17 samples in one batch
    (the fewest its 16-d FID takes), so a fix of T = 1000 steps is 1000 network calls."""
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    return [f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}", f"metrics.classifier_ckpt={classifier}",
            f"metrics.cache_root={tmp_path / 'cache'}", *TINY, "guidance_scales=[1]",
            "num_samples=17", "batch_size=17"]


@pytest.mark.parametrize(("bad", "error", "suggested", "check"), [
    ("grid.steps=[4,5000]", "error: grid.steps: steps=5000 exceeds", r"e\.g\. (grid\.steps=\d+)",
     lambda run: read_csv(run / "guidance_sweep.csv")[0]["sampler.steps"] == 1000),
    ("seed=1", "error: seed: no such config key", r"did you mean (seeds=1)\?",
     lambda run: json.loads((run / "summary.json").read_text())["seeds"] == [1]),
])
def test_bad_sweep_input_exits_2_and_the_suggested_fix_runs(bad, error, suggested, check, tiny_ldm_run,
                                                            fmnist_dir, tmp_path_factory, tmp_path):
    args = scored_args(tiny_ldm_run, fmnist_dir, tmp_path_factory, tmp_path)
    out = run_forked("ldmlab.commands.evaluate", [*args, bad], tmp_path)
    assert out.returncode == 2 and out.stderr.startswith(error) and out.stderr.count("\n") == 1, out.stderr
    out = run_forked("ldmlab.commands.evaluate", [*args, re.search(suggested, out.stderr).group(1)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert check((tmp_path / "evaluate" / "latest").resolve())
