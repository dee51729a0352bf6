"""``python -m ldmlab.commands.export`` on a tiny trained flow-matching run: the folders reload with
diffusers, and diffusers' own Euler loop over them samples what ldmlab's sampler samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from safetensors.torch import load_file

from ldmlab.interop.continuous_scheduler import flow_sigmas
from ldmlab.models.restore import load_ldm
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.ddim import DDIMSampler
from tests.conftest import run_forked

# pixel space (no first stage to train), a UNet diffusers can express (widths multiples of 32)
TINY_PIXEL_FLOW = [
    "first_stage=identity", "diffusion/objective=flow", "diffusion.schedule.shift=2.0",
    "data.train_subset=64", "data.val_subset=32", "data.batch_size=16", "trainer.max_epochs=1",
    "module.warmup_steps=0", "callbacks.image_logger.num_images=4", "logger=none",
    "backbone.model_channels=32", "backbone.num_res_blocks=1", "backbone.num_heads=2",
    "backbone.channel_mult=[1,2]", "backbone.attention_resolutions=[2]", "conditioner_context_dim=32",
]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, fmnist_dir) -> dict[str, Path]:
    log_dir = tmp_path_factory.mktemp("flow_logs")
    out = run_forked("ldmlab.commands.train", TINY_PIXEL_FLOW, log_dir, config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return {"ckpt": next(log_dir.glob("train_ldm/runs/*/checkpoints/last.ckpt")), "logs": log_dir}


@torch.no_grad()
def test_flow_export_samples_like_ldmlab(flow_run, tmp_path) -> None:
    out = tmp_path / "exported_flow"
    args = [f"ckpt={flow_run['ckpt']}", f"out={out}"]
    result = run_forked("ldmlab.commands.export", args, flow_run["logs"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "scheduler sigmas: max |diff| = " in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["conditioner", "export.json", "scheduler", "unet"]
    summary = json.loads((out / "export.json").read_text())
    assert summary["max_abs_diff"]["unet"] <= 1e-5 and summary["max_abs_diff"]["scheduler sigmas"] <= 1e-6

    module = load_ldm(flow_run["ckpt"])
    unet, conditioner = module.ema.shadow["backbone"].eval(), module.ema.shadow["conditioner"].eval()
    assert unet.out[2].weight.abs().max() > 0  # trained: the zero-initialised output conv moved
    labels = torch.tensor([1, 6])
    spec = json.loads((out / "conditioner" / "conditioner.json").read_text())["embedders"][0]
    context = load_file(out / "conditioner" / "model.safetensors")[spec["table"]][labels][:, None]
    theirs = UNet2DConditionModel.from_pretrained(out / "unet", low_cpu_mem_usage=False).eval()
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(out / "scheduler")
    assert scheduler.config.shift == 2.0

    steps, side = 4, module.resolution
    noise = torch.randn(2, unet.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    denoise = GuidedDenoiser(unet, module.parameterization, module.schedule, conditioner({"label": labels}))
    ours = DDIMSampler(steps=steps).sample(denoise, noise, module.schedule)
    scheduler.set_timesteps(sigmas=flow_sigmas(steps))
    x = noise
    for t in scheduler.timesteps:
        velocity = theirs(x, t, encoder_hidden_states=context).sample
        x = scheduler.step(velocity, t, x).prev_sample
    assert ours.std() > 1e-2
    torch.testing.assert_close(x, ours, rtol=1e-4, atol=1e-4 * float(ours.abs().max()))
