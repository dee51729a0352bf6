"""`make train-ldm ARGS="first_stage=diffusers first_stage.path=..."` end to end on a saved diffusers
AutoencoderKL, then `make sample` from the stage-2 checkpoint alone (the VAE directory deleted)."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from ldmlab.checkpoints import FIRST_STAGE_CONFIG
from tests.conftest import TINY_LDM, run_forked
from tests.unit.first_stage.test_diffusers_first_stage import save_tiny_vae


def test_train_on_a_diffusers_vae_then_sample_without_it(tmp_path, fmnist_dir):
    vae_dir = tmp_path / "vae"
    save_tiny_vae(vae_dir)
    args = [*TINY_LDM, "first_stage=diffusers", f"first_stage.path={vae_dir}", "data.channels=1",
            "first_stage_downsample_factor=2", "data.train_subset=32", "data.val_subset=16",
            "module.scale_fit_batches=1", "callbacks.image_logger=null", "logger=none", "sampler.steps=3"]
    out = run_forked("ldmlab.commands.train", args, tmp_path / "logs", "train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = (tmp_path / "logs" / "train_ldm" / "latest" / "checkpoints" / "last.ckpt").resolve()
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert stored[FIRST_STAGE_CONFIG]["block_out_channels"] == [32, 64]
    assert "first_stage.vae.encoder.conv_in.weight" in stored["state_dict"]

    shutil.rmtree(vae_dir)
    sample = ["num_samples=2", "sampler.steps=3", f"ckpt={ckpt}"]
    out = run_forked("ldmlab.commands.sample", sample, tmp_path / "logs")
    assert out.returncode == 0, out.stderr[-3000:]
    images = np.load((tmp_path / "logs" / "sample" / "latest" / "samples.npz").resolve())["images"]
    assert images.shape == (2, 32, 32, 1) and images.std() > 0
