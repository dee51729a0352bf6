"""The Makefile's targets are documented and expand to the right commands; the benchmarks and
the stage-1 recipe probe run end to end on tiny models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.conftest import REPO, compose_config


def _documented_targets() -> list[str]:
    return re.findall(r"^([a-z-]+):.*## ", (REPO / "Makefile").read_text(), flags=re.M)


def test_every_make_target_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    targets = _documented_targets()
    assert {"demo", "test", "train-ae", "train-ldm", "train-noisy-classifier", "sweep", "evaluate",
            "report"} <= set(targets)
    missing = [t for t in targets if not re.search(rf"make {re.escape(t)}(?![\w-])", readme)]  # whole names
    assert not missing, f"README does not describe {missing}"


def test_make_clean_removes_only_what_ldmlab_writes(tmp_path):
    """``logs/`` and tool caches go; a folder ldmlab never writes (Hydra's default ``outputs/``,
    ``multirun/``: a user's, since every ldmlab config sets its run dirs under ``logs/``) stays."""
    (tmp_path / "Makefile").write_text((REPO / "Makefile").read_text())
    for folder in ("logs/train_ae", "outputs", "multirun"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "file").write_text("x")
    subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "multirun", "outputs"]


def test_demo_ends_with_a_classifier_and_a_guidance_sweep():
    out = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = out.replace("\\\n", " ").splitlines()
    entry = r"(?:-m ldmlab\.commands\.|ldmlab-)(train|sample|evaluate) "  # module or console script
    commands = [line for line in lines if re.search(entry, line)]
    assert [re.search(entry, c).group(1) for c in commands] == [
        "train", "train", "sample", "sample", "train", "evaluate"]
    assert "--config-name train_classifier" in commands[4]
    assert "guidance_scales=[1,2,3,5]" in commands[5] and "metrics.classifier_ckpt=" in commands[5]


def test_sweep_cost_benchmark_prints_the_breakdown(tiny_ldm_run, tmp_path):
    ckpt = tiny_ldm_run / "train_ldm" / "latest"
    cmd = [sys.executable, "benchmarks/bench.py", "sweep", "--ckpt", str(ckpt), "--scales", "1,3",
           "--num-samples", "65", "--num-reference", "65", "--sampler-steps", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ratio = float(re.search(r"ratio ([0-9.]+)", out.stdout).group(1))
    assert 0.5 < ratio < 2.0, out.stdout
    assert len(re.findall(r"^  s=", out.stdout, flags=re.M)) == 2, out.stdout
    assert "reference features (65 images)" in out.stdout


def test_autoencoder_step_benchmark_prints_both_ratios():
    cmd = [sys.executable, "benchmarks/bench.py", "ae", "--batch-size", "2", "--repeats", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(re.search(r"ours/official ([0-9.]+)", out.stdout).group(1)) > 0, out.stdout
    assert float(re.search(r"float32/bf16 ([0-9.]+)x", out.stdout).group(1)) > 0, out.stdout


def test_stage1_recipe_probe_reports_psnr(fmnist_dir):
    cmd = [sys.executable, "experiments/ae-fashion-mnist/recipe_probe.py", "3", "2,3",
           "data.train_subset=64", "data.val_subset=32", "autoencoder.encoder.ch=16"]
    env = dict(os.environ, NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in results] == [2, 3], out.stdout
    assert all(0 < r["psnr"] < 60 and r["train_s"] > 0 for r in results), results


def _make_variable(name: str) -> list[str]:
    match = re.search(rf"^{name} \?= (.*)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert match, f"Makefile defines no {name}"
    return match.group(1).split()


def test_the_demo_overrides_compose():
    classifier = compose_config("train_classifier", _make_variable("DEMO_CLASSIFIER_ARGS"))
    assert classifier.trainer.max_epochs == 1 and classifier.trainer.limit_train_batches == 200
    sweep = compose_config("evaluate", _make_variable("DEMO_SWEEP_ARGS"))
    assert list(sweep.guidance_scales) == [1, 2, 3, 5] and sweep.num_samples == 300


def test_side_by_side_bench_quick_writes_results_and_agrees(tmp_path):
    cmd = [sys.executable, "benchmarks/bench.py", "diffusers", "--quick",
           "--cases", "ddim,ddim_loop,unet,dit", "--threads", "1", "--out", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ddim = json.loads((tmp_path / "ddim_cfg_sample.json").read_text())
    assert ddim["agreement"] == "PASS" and float(ddim["max_abs_diff"]) <= ddim["tolerance"], ddim
    assert float(ddim["image_std"]) > 0.01, ddim  # real images, not a degenerate constant
    loop = json.loads((tmp_path / "ddim_loop.json").read_text())
    assert loop["agreement"] == "PASS" and float(loop["max_abs_diff"]) <= loop["tolerance"], loop
    assert loop["ours"]["params"] == loop["theirs"]["params"] > 0, loop
    for case in ("unet_small_train", "unet_small_cfg", "unet_base_train", "unet_base_cfg"):
        result = json.loads((tmp_path / f"{case}.json").read_text())
        assert result["ours"]["params"] == result["theirs"]["params"] > 0, result
        assert result["ours"]["ms_per_step"] > 0 and result["theirs"]["ms_per_step"] > 0
        assert result["verdict"] in ("PASS", "MISS") and "ratio = " in out.stdout
    for case in ("dit_train", "dit_cfg"):
        result = json.loads((tmp_path / f"{case}.json").read_text())
        assert result["agreement"] == "PASS" and float(result["max_abs_diff"]) <= 1e-4, result
        # diffusers holds the time MLP (256→128→128) and the 11-row label table in each of the 6 blocks
        extra = 5 * (256 * 128 + 128 + 128 * 128 + 128 + 11 * 128)
        assert result["theirs"]["params"] - result["ours"]["params"] == extra, result
        assert result["ours"]["ms_per_step"] > 0 and result["theirs"]["ms_per_step"] > 0
