"""`python -m ldmlab.commands.train --config-name train_noisy_classifier` (what `make train-noisy-classifier`
runs): a tiny wiring run, and a short real fit whose accuracy falls from the low-noise to the
high-noise t-bucket."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ldmlab.classifier.noisy_loading import load_noisy_classifier, resolve_noisy_classifier
from ldmlab.first_stage.autoencoder import FirstStage
from tests.conftest import run_forked

TASK = "train_noisy_classifier"
TINY_NET = ["noisy_classifier.model_channels=16", "noisy_classifier.num_heads=2",
            "noisy_classifier.pool_heads=2"]
BUCKETS = [f"t{lo}_{lo + 100}" for lo in range(0, 1000, 100)]


def bucket_rows(run: Path) -> list[dict]:
    with (run / "t_bucket_accuracy.csv").open() as file:
        return list(csv.DictReader(file))


def test_tiny_run_logs_bucket_accuracies_and_a_loadable_checkpoint(tiny_ae_ckpt, tmp_path):
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", "data.train_subset=64", "data.val_subset=32",
            "data.batch_size=16", "trainer.max_epochs=2", "logger=csv", *TINY_NET]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name=TASK)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / TASK / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["checkpoints"]["monitor"] == "val/acc"
    names = {"val/acc", "val/loss", *(f"val/acc_{b}" for b in BUCKETS)}
    assert names <= set(summary["metrics"]) and all(math.isfinite(summary["metrics"][n]) for n in names)
    assert list(summary["t_bucket_accuracy"]) == BUCKETS
    assert summary["t_bucket_accuracy"]["t0_100"] == summary["metrics"]["val/acc_t0_100"]

    rows = bucket_rows(run)
    assert [(r["epoch"], r["t_lo"], r["t_hi"]) for r in rows[:2]] == [("0", "0", "100"), ("0", "100", "200")]
    assert len(rows) == 2 * 10 and {r["count"] for r in rows} == {"32"}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/acc", *names} <= set(header)  # (train/loss every 50 steps: none in 8)

    loaded = load_noisy_classifier(resolve_noisy_classifier(None, str(tmp_path)))
    first_stage = FirstStage(str(tiny_ae_ckpt), str(tmp_path), 4, 4, 1)
    assert loaded.first_stage_fingerprint == first_stage.fingerprint()
    assert loaded.scale_factor == summary["scale_factor"] and loaded.latent_shape == (4, 8, 8)
    assert loaded.network.config["model_channels"] == 16 and loaded.alphas_cumprod.shape == (1000,)


def test_short_fit_is_accurate_at_low_noise_and_near_chance_at_high_noise(tiny_ae_ckpt, tmp_path):
    """300 steps of 64 real Fashion-MNIST images (~30 s on 2 cores): the lowest t-bucket is well
    above chance (measured 0.57), the highest, where z_t is almost pure noise, near it (0.14)."""
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", "data.train_subset=19200", "data.val_subset=500",
            "data.batch_size=64", "trainer.max_epochs=1", "module.optimizer.lr=3e-3",
            "logger=none", *TINY_NET]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name=TASK)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / TASK / "latest" / "summary.json").read_text())
    accuracy = summary["t_bucket_accuracy"]
    assert summary["global_step"] == 300
    assert accuracy["t0_100"] > 0.4 and accuracy["t900_1000"] < 0.25, accuracy
    assert accuracy["t0_100"] > accuracy["t500_600"] > accuracy["t900_1000"], accuracy
