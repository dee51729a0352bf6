"""`make train-ldm` and `make sample` end to end: real first stage, real data, every sampler.

The shared stage-2 run and the per-sampler runs go through ``python -m``; the other tests fork the
test process into the same entry point's ``main`` (``run_forked``: no 6 s interpreter start)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import TINY_LDM, run_cli, run_forked


def test_train_ldm_writes_summary_checkpoint_and_sample_grids(tiny_ldm_run, tiny_ae_ckpt):
    run = (tiny_ldm_run / "train_ldm" / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    assert "val/loss" in summary["metrics"] and summary["scale_factor"] > 0
    assert summary["first_stage_ckpt"] == str(tiny_ae_ckpt)
    assert (run / "images" / "samples_scale1_epoch000.png").is_file()
    assert (run / "images" / "samples_scale3_epoch000.png").is_file()
    state = torch.load(run / summary["checkpoints"]["last"], weights_only=True)["state_dict"]
    assert any(k.startswith("ema.shadow.backbone.") for k in state)
    assert float(state["first_stage.scale_initialized"]) == 1.0


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp"])
def test_sample_with_each_sampler(sampler, tiny_ldm_run, tmp_path):
    steps = {"ddim": 10, "ddpm": 20, "dpmpp": 8}[sampler]
    args = [f"sampler={sampler}", f"sampler.steps={steps}", "guidance.scale=3", "num_samples=6",
            "class_label=7", f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}"]
    out = run_cli("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "sample" / "latest").resolve()
    data = np.load(run / "samples.npz")
    assert data["images"].shape == (6, 32, 32, 1) and data["images"].dtype == np.uint8
    assert (data["labels"] == 7).all() and str(data["guidance"]) == "cfg"
    assert float(data["guidance_scale"]) == 3.0
    assert (run / "samples.png").is_file()


def test_sampling_is_reproducible_from_the_seed(tiny_ldm_run, tmp_path):
    args = ["sampler.steps=5", "num_samples=4", "seed=3", f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}"]
    first = run_forked("ldmlab.commands.sample", args, tmp_path / "a")
    second = run_forked("ldmlab.commands.sample", args, tmp_path / "b")
    assert first.returncode == second.returncode == 0, first.stderr[-2000:]
    a = np.load((tmp_path / "a/sample/latest/samples.npz").resolve())["images"]
    b = np.load((tmp_path / "b/sample/latest/samples.npz").resolve())["images"]
    assert np.array_equal(a, b)


def test_text_conditioned_model_samples_from_a_prompt(tiny_ae_ckpt, tmp_path):
    args = ["conditioner=text", f"first_stage.ckpt={tiny_ae_ckpt}", "logger=none", *TINY_LDM,
            "callbacks.image_logger=null"]
    train = run_forked("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    assert train.returncode == 0, train.stderr[-3000:]
    args = ["sampler.steps=5", "num_samples=4", "guidance.scale=2", "prompt='a photo of a sneaker'",
            f"ckpt={tmp_path / 'train_ldm' / 'latest'}"]
    out = run_forked("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    refused = run_forked("ldmlab.commands.sample", [*args[:-1], "class_label=3", "prompt=null", args[-1]],
                         tmp_path)
    assert refused.returncode == 2 and "class_label" in refused.stderr


def test_missing_first_stage_is_one_clear_error(tmp_path, fmnist_dir):
    out = run_forked("ldmlab.commands.train", ["logger=none"], tmp_path, config_name="train_ldm")
    assert out.returncode == 2 and "first_stage.ckpt" in out.stderr and "make train-ae" in out.stderr


def test_mismatched_first_stage_names_the_key(tiny_ae_ckpt, tmp_path):
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", "first_stage_embed_dim=8", "logger=none"]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    assert out.returncode == 2 and out.stderr.strip().startswith("error: first_stage_embed_dim:")
    assert "first_stage_embed_dim=4" in out.stderr


def test_invalid_p_uncond_names_the_key(tiny_ae_ckpt, tmp_path):
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", "conditioner.p_uncond=1.5", "logger=none"]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    assert out.returncode == 2 and "conditioner.p_uncond" in out.stderr


@pytest.mark.parametrize(("override", "key"), [
    ("sampler.steps=-3", "steps"), ("class_label=12", "class_label"), ("num_samples=0", "num_samples"),
])
def test_bad_sampling_requests_name_the_key(override, key, tiny_ldm_run, tmp_path):
    args = [override, "num_samples=2", f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}"]
    if override.startswith("num_samples"):
        args = [override, args[-1]]
    out = run_forked("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 2 and key in out.stderr, out.stderr[-2000:]
