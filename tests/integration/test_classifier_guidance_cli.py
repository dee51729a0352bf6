"""Classifier guidance through the CLI on tiny real models: `make sample` / `make evaluate` with
guidance=classifier and guidance=cfg_classifier, on a conditional and an unconditional LDM, the
guidance-cost benchmark, and bad input (one line naming the key, exit 2, the fix runs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ldmlab.evaluation.table import read_csv
from tests.conftest import REPO, TINY_LDM, run_forked
from tests.unit.models.test_classifier import tiny_classifier_ckpt

SAMPLE = ["sampler=ddim", "sampler.steps=3", "num_samples=6", "batch_size=4"]


@pytest.fixture(scope="module")
def uncond_ldm(tmp_path_factory, tiny_ae_ckpt):
    """A tiny unconditional LDM (conditioner=none) on the same first stage: its run dir."""
    log_dir = tmp_path_factory.mktemp("uncond_ldm")
    tiny = [a for a in TINY_LDM if not a.startswith("conditioner_context_dim=")]
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", "conditioner=none", "logger=none", *tiny]
    out = run_forked("ldmlab.commands.train", args, log_dir, config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return log_dir / "train_ldm" / "latest"


def sample(ckpt, classifier, tmp_path, *args):
    """Run `make sample` (forked); with ``classifier``, as ``guidance.classifier_ckpt``."""
    extra = [f"guidance.classifier_ckpt={classifier}"] if classifier else []
    out = run_forked("ldmlab.commands.sample", [f"ckpt={ckpt}", *extra, *SAMPLE, *args], tmp_path)
    latest = tmp_path / "sample" / "latest" / "summary.json"
    return out, json.loads(latest.read_text()) if out.returncode == 0 else {}


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp"])
def test_classifier_guidance_steers_an_unconditional_ldm_toward_class_label(
    uncond_ldm, tiny_noisy_classifier_run, tmp_path, sampler
):
    out, summary = sample(
        uncond_ldm,
        tiny_noisy_classifier_run,
        tmp_path,
        "guidance=classifier",
        "guidance.scale=4",
        "class_label=3",
        f"sampler={sampler}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert summary["guidance"]["name"] == "classifier" and summary["guidance"]["scale"] == 4
    data = np.load(tmp_path / "sample" / "latest" / "samples.npz")
    assert (data["labels"] == 3).all() and data["images"].shape == (6, 32, 32, 1)


def test_cfg_and_classifier_guidance_together_on_a_conditional_ldm(
    tiny_ldm_run, tiny_noisy_classifier_run, tmp_path
):
    out, summary = sample(
        tiny_ldm_run / "train_ldm" / "latest",
        None,
        tmp_path,
        "guidance=cfg_classifier",
        f"guidance.terms.classifier.classifier_ckpt={tiny_noisy_classifier_run}",
        "guidance.terms.cfg.scale=3",
        "guidance.terms.classifier.scale=2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert summary["guidance"]["name"] == "cfg+classifier"
    labels = np.load(tmp_path / "sample" / "latest" / "samples.npz")["labels"]
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]  # classes in turn, shared by CFG and the classifier


def test_evaluate_sweeps_the_classifier_scale(
    uncond_ldm, tiny_noisy_classifier_run, fmnist_dir, tmp_path_factory, tmp_path
):
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    args = [
        f"ckpt={uncond_ldm}",
        "guidance=classifier",
        f"guidance.classifier_ckpt={tiny_noisy_classifier_run}",
        "guidance_scales=[0,4]",
        "sampler=ddim",
        "sampler.steps=3",
        "num_samples=20",
        "num_reference=40",
        "batch_size=10",
        f"metrics.classifier_ckpt={classifier}",
        f"metrics.cache_root={tmp_path / 'cache'}",
        "metrics.inception=false",
        "metrics.kid_subset_size=16",
        "metrics.kid_subsets=10",
    ]
    out = run_forked("ldmlab.commands.evaluate", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_csv(next(tmp_path.glob("evaluate/runs/*/guidance_sweep.csv")))
    assert [(r["guidance"], r["guidance_scale"]) for r in rows] == [("classifier", 0), ("classifier", 4)]
    assert "w" not in rows[0] and rows[0]["fid_classifier"] != rows[1]["fid_classifier"]
    assert "best classifier scale by fid_classifier" in out.stdout


def test_guidance_cost_benchmark_prints_a_ratio_per_guidance(tiny_ldm_run, tiny_noisy_classifier_run):
    cmd = [
        sys.executable,
        "benchmarks/bench.py",
        "guidance",
        "--ckpt",
        str(tiny_ldm_run / "train_ldm" / "latest"),
        "--classifier-ckpt",
        str(tiny_noisy_classifier_run),
        "--num-samples",
        "4",
        "--steps",
        "2",
        "--repeats",
        "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ratios = dict(
        re.findall(r"^  (\S.*?)\s+[0-9.]+ ms/image\s+×\s*([0-9.]+) vs unguided", out.stdout, flags=re.M)
    )
    assert list(ratios) == [
        "unguided",
        "cfg s=3",
        "classifier s=2",
        "cfg s=3 + classifier s=2",
        "image l2 (detach_unet=False)",
        "image l2 (detach_unet=True)",
    ], out.stdout
    assert float(ratios["unguided"]) == 1.0


@pytest.mark.parametrize(
    ("args", "key", "fix_args"),
    [
        (["guidance=classifier", "guidance.scale=-1"], "guidance.scale", None),
        (["guidance=classifier", "guidance.classifier_ckpt={text}"], "guidance.classifier_ckpt", None),
        (["guidance=classifier", "guidance.classifier_ckpt=null"], "guidance.classifier_ckpt", None),
        (["guidance.scale=3"], "guidance.scale", ["guidance.scale=1"]),
    ],
)
def test_bad_classifier_guidance_input_is_one_line(uncond_ldm, tmp_path, args, key, fix_args):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    args = [a.format(text=text) for a in args]
    out = run_forked("ldmlab.commands.sample", [f"ckpt={uncond_ldm}", *SAMPLE, *args], tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-3000:]
    assert out.stderr.startswith(f"error: {key}: ") and "Fix: " in out.stderr
    if fix_args:  # the suggested fix, applied, runs
        fixed = run_forked("ldmlab.commands.sample", [f"ckpt={uncond_ldm}", *SAMPLE, *fix_args], tmp_path)
        assert fixed.returncode == 0, fixed.stderr[-3000:]


def test_guidance_none_samples_the_plain_model(uncond_ldm, tmp_path):
    out, summary = sample(uncond_ldm, None, tmp_path, "guidance=none")
    assert out.returncode == 0, out.stderr[-3000:]
    assert summary["guidance"]["name"] == "none"
    plain = np.load(tmp_path / "sample" / "latest" / "samples.npz")["images"]
    out, _ = sample(uncond_ldm, None, tmp_path, "guidance=cfg", "guidance.scale=1")
    assert out.returncode == 0 and np.array_equal(
        plain, np.load(tmp_path / "sample" / "latest" / "samples.npz")["images"]
    )
