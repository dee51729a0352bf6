"""`python -m ldmlab.commands.train --config-name train_classifier` (what `make train-classifier` runs)."""

from __future__ import annotations

import json

import torch

from ldmlab.classifier.loading import load_classifier
from ldmlab.metrics.classifier_features import ClassifierFeatures
from tests.conftest import run_cli, run_forked

TINY = ["data.train_subset=128", "data.val_subset=64", "data.batch_size=32", "classifier.widths=[8,16]",
        "classifier.groups=4"]


def test_fast_dev_run(tmp_path, fmnist_dir):
    out = run_cli("ldmlab.commands.train", ["debug=fast_dev_run"], tmp_path, config_name="train_classifier")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "train_classifier" / "latest" / "summary.json").read_text())
    assert {"val/acc", "val/loss"} <= set(summary["metrics"])


def test_short_run_checkpoint_feeds_the_metrics(tmp_path, fmnist_dir):
    args = ["trainer.max_epochs=1", "logger=csv", *TINY]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name="train_classifier")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "train_classifier" / "latest" / "summary.json").read_text())
    assert summary["checkpoints"]["monitor"] == "val/acc"
    assert summary["checkpoints"]["best_score"] == summary["metrics"]["val/acc"]
    best = tmp_path / "train_classifier" / "latest" / summary["checkpoints"]["best"]
    network = load_classifier(best)  # weights_only=True on the full Lightning checkpoint
    assert network.config["widths"] == [8, 16] and network.feature_dim == 16
    features = ClassifierFeatures(best)(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    assert features["logits"].shape == (4, 10) and features["features"].shape == (4, 16)

