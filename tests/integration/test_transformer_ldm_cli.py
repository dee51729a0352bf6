"""Transformer denoisers through the CLI: a tiny DiT with DiT's own class conditioning
(conditioner=class_vector) trains, samples with CFG and is evaluated; a tiny U-ViT trained on
captions samples from a prompt (its context tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ldmlab.evaluation.table import read_csv
from tests.conftest import TINY_DIT, run_forked
from tests.integration.test_evaluate_cli import TINY as TINY_EVALUATE
from tests.unit.models.test_classifier import tiny_classifier_ckpt

TINY_UVIT = ["data.train_subset=64", "data.val_subset=16", "data.batch_size=16", "backbone=uvit",
             "conditioner=text", "conditioner_context_dim=32", "conditioner.embedders.caption.depth=1",
             "backbone.hidden_size=32", "backbone.depth=3", "backbone.num_heads=2", "trainer.max_epochs=1",
             "module.warmup_steps=0", "callbacks.image_logger=null", "logger=none"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Forked CLI runs on the 2 busy cores: one OpenMP thread each."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _train(log_dir: Path, args: list[str], ae_ckpt: Path) -> Path:
    out = run_forked("ldmlab.commands.train", [f"first_stage.ckpt={ae_ckpt}", *args], log_dir,
                     config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return (log_dir / "train_ldm" / "latest").resolve()


@pytest.fixture(scope="module")
def tiny_dit_run(tmp_path_factory, tiny_ae_ckpt) -> Path:
    """A real (tiny, 1-epoch) DiT run, class labels through its adaLN; returns its run dir."""
    return _train(tmp_path_factory.mktemp("dit_logs"), [*TINY_DIT, "logger=csv"], tiny_ae_ckpt)


def test_dit_trains_with_a_label_table_as_wide_as_its_tokens(tiny_dit_run):
    summary = json.loads((tiny_dit_run / "summary.json").read_text())
    assert "val/loss" in summary["metrics"] and summary["scale_factor"] > 0
    assert (tiny_dit_run / "images" / "samples_scale3_epoch000.png").is_file()
    state = torch.load(tiny_dit_run / summary["checkpoints"]["last"], weights_only=True)["state_dict"]
    table = state["model.conditioner.embedders.label.table.weight"]
    assert table.shape == (11, 32)  # 10 classes + the CFG null, hidden_size wide: added as is
    assert not any("vector_embed" in key for key in state)
    assert state["ema.shadow.backbone.blocks.1.modulation.weight"].shape == (6 * 32, 32)
    assert state["model.backbone.final.linear.weight"].abs().sum() > 0  # trained off its zero init


def test_dit_samples_a_class_with_cfg(tiny_dit_run, tmp_path):
    args = ["sampler=ddim", "sampler.steps=10", "guidance.scale=3", "num_samples=6", "class_label=7",
            f"ckpt={tiny_dit_run}"]
    out = run_forked("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    data = np.load((tmp_path / "sample" / "latest" / "samples.npz").resolve())
    assert data["images"].shape == (6, 32, 32, 1) and data["images"].dtype == np.uint8
    assert (data["labels"] == 7).all() and str(data["guidance"]) == "cfg"
    assert float(data["guidance_scale"]) == 3.0 and data["images"].std() > 0


def test_dit_checkpoint_evaluates_over_guidance_scales(tiny_dit_run, fmnist_dir, tmp_path_factory, tmp_path):
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    args = [f"ckpt={tiny_dit_run}", "guidance_scales=[1,3]", f"metrics.classifier_ckpt={classifier}",
            f"metrics.cache_root={tmp_path / 'cache'}", *TINY_EVALUATE]
    out = run_forked("ldmlab.commands.evaluate", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_csv((tmp_path / "evaluate" / "latest").resolve() / "guidance_sweep.csv")
    assert [row["guidance_scale"] for row in rows] == [1.0, 3.0]
    assert all(0 <= row["accuracy_classifier"] <= 1 and row["fid_classifier"] > 0 for row in rows)


def test_uvit_trained_on_captions_samples_from_a_prompt(tiny_ae_ckpt, tmp_path):
    run = _train(tmp_path, TINY_UVIT, tiny_ae_ckpt)
    args = ["sampler.steps=4", "num_samples=2", "guidance.scale=2", "prompt='a photo of a sneaker'",
            f"ckpt={run}"]
    out = run_forked("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    data = np.load((tmp_path / "sample" / "latest" / "samples.npz").resolve())
    assert data["images"].shape == (2, 32, 32, 1) and str(data["guidance"]) == "cfg"
