"""``python -m ldmlab.commands.export``: a trained stage-2 / stage-1 run → diffusers folders that reload
with diffusers and compute what ldmlab computes; bad inputs are one ``error:`` line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel, UNet2DConditionModel
from safetensors.torch import load_file

from ldmlab.models.restore import load_ldm
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.ddim import DDIMSampler
from tests.conftest import TINY_AE, TINY_LDM, run_forked

# diffusers has one GroupNorm group count: widths that are multiples of 32 (the fixtures' 16 are not)
WIDE_AE = [a for a in TINY_AE if not a.startswith("autoencoder.encoder.ch=")] + ["autoencoder.encoder.ch=32"]
WIDE_LDM = [a for a in TINY_LDM if not a.startswith("backbone.model_channels=")]
WIDE_LDM += ["backbone.model_channels=32"]
# a transformer backbone, class labels added to the time embedding (DiT's conditioning)
PATCH_LDM = [a for a in TINY_LDM if not a.startswith(("backbone.", "conditioner_context_dim="))]
PATCH_LDM += ["conditioner=class_vector", "backbone.hidden_size=32", "backbone.num_heads=2", "logger=none"]


@pytest.fixture(scope="module")
def exportable(tmp_path_factory, fmnist_dir) -> dict[str, Path]:
    """A tiny stage-1 and stage-2 run (trained a few steps) whose networks diffusers can express."""
    log_dir = tmp_path_factory.mktemp("export_logs")
    out = run_forked("ldmlab.commands.train", ["trainer.max_epochs=1", *WIDE_AE], log_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    ae = next(log_dir.glob("train_ae/runs/*/checkpoints/last.ckpt"))
    out = run_forked("ldmlab.commands.train", [f"first_stage.ckpt={ae}", "logger=none", *WIDE_LDM], log_dir,
                     config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return {"ae": ae, "ldm": next(log_dir.glob("train_ldm/runs/*/checkpoints/last.ckpt")), "logs": log_dir}


@pytest.fixture(scope="module")
def patch_runs(tmp_path_factory, exportable) -> dict[str, Path]:
    """Tiny DiT and U-ViT stage-2 runs on the exportable autoencoder: their last checkpoints."""
    ckpts = {}
    for backbone, depth in (("dit", 2), ("uvit", 3)):
        log_dir = tmp_path_factory.mktemp(f"{backbone}_logs")
        args = [f"first_stage.ckpt={exportable['ae']}", f"backbone={backbone}", f"backbone.depth={depth}",
                *PATCH_LDM]
        out = run_forked("ldmlab.commands.train", args, log_dir, config_name="train_ldm")
        assert out.returncode == 0, out.stderr[-3000:]
        ckpts[backbone] = next(log_dir.glob("train_ldm/runs/*/checkpoints/last.ckpt"))
    return ckpts


def export(args: list[str], log_dir: Path):
    return run_forked("ldmlab.commands.export", args, log_dir)


@torch.no_grad()
def test_stage2_export_reloads_and_matches(exportable, tmp_path) -> None:
    out = tmp_path / "exported"
    result = export([f"ckpt={exportable['ldm']}", f"out={out}"], exportable["logs"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unet: max |diff| = " in result.stdout and "vae: max |diff| = " in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["conditioner", "export.json", "scheduler", "unet", "vae"]
    summary = json.loads((out / "export.json").read_text())
    assert summary["stage"] == 2 and summary["max_abs_diff"]["unet"] <= 1e-5

    module = load_ldm(exportable["ldm"])
    unet, conditioner = module.ema.shadow["backbone"].eval(), module.ema.shadow["conditioner"].eval()
    assert unet.out[2].weight.abs().max() > 0  # trained: the zero-initialised output conv moved
    labels = torch.tensor([0, 3, 9])
    cond = conditioner({"label": labels})
    # encoder_hidden_states from the exported table, as conditioner.json describes
    spec = json.loads((out / "conditioner" / "conditioner.json").read_text())["embedders"][0]
    table = load_file(out / "conditioner" / "model.safetensors")[spec["table"]]
    torch.testing.assert_close(table[labels][:, None], cond["crossattn"], rtol=0, atol=0)

    theirs = UNet2DConditionModel.from_pretrained(out / "unet", low_cpu_mem_usage=False).eval()
    x, t = torch.randn(3, unet.in_channels, 8, 8), torch.tensor([5, 500, 999])
    ours = unet(x, t, cond)
    assert ours.std() > 1e-3
    got = theirs(x, t, encoder_hidden_states=table[labels][:, None]).sample
    torch.testing.assert_close(got, ours, rtol=1e-5, atol=1e-5 * float(ours.abs().max()))

    scheduler = DDIMScheduler.from_pretrained(out / "scheduler")
    torch.testing.assert_close(scheduler.alphas_cumprod, module.schedule.alphas_cumprod, rtol=1e-4, atol=1e-6)
    vae = AutoencoderKL.from_pretrained(out / "vae", low_cpu_mem_usage=False).eval()
    assert vae.config.scaling_factor == pytest.approx(float(module.first_stage.scale_factor))
    z = torch.randn(1, unet.in_channels, 8, 8)
    torch.testing.assert_close(vae.decode(z).sample, module.first_stage.autoencoder.decode(z),
                               rtol=1e-4, atol=1e-4)


def test_stage1_export_and_existing_out(exportable, tmp_path) -> None:
    out = tmp_path / "vae_only"
    result = export([f"ckpt={exportable['ae']}", f"out={out}"], exportable["logs"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "vae"]

    again = export([f"ckpt={exportable['ae']}", f"out={out}"], exportable["logs"])
    lines = again.stderr.strip().splitlines()
    assert again.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: out: "), again.stderr
    fix = lines[0].split("Fix: ", 1)[1]
    assert fix == "overwrite=true"
    fixed = export([f"ckpt={exportable['ae']}", f"out={out}", fix], exportable["logs"])
    assert fixed.returncode == 0, fixed.stderr[-3000:]


def test_inexpressible_unet_is_one_error_line(tiny_ldm_run, tmp_path) -> None:
    out = tmp_path / "never"
    result = export([f"out={out}"], tiny_ldm_run)  # its latest run: backbone.model_channels=16
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: backbone.model_channels: ") and not out.exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if ".tmp" in p.name)


def one_out_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: out: "), result.stderr
    return lines[0]


def test_overwrite_never_deletes_a_file_export_did_not_write(exportable, tmp_path) -> None:
    ckpt, logs, out = f"ckpt={exportable['ae']}", exportable["logs"], tmp_path / "vae_only"
    assert export([ckpt, f"out={out}"], logs).returncode == 0
    (out / "README.md").write_text("my model card")
    before = snapshot(out)
    line = one_out_line(export([ckpt, f"out={out}", "overwrite=true"], logs))
    assert "README.md" in line and snapshot(out) == before
    fix = line.split("Fix: ")[1]
    assert fix == f"out={tmp_path / 'vae_only_2'}"
    assert export([ckpt, fix], logs).returncode == 0 and (tmp_path / "vae_only_2" / "export.json").is_file()

    mine = tmp_path / "mine"  # a folder of the user's that happens to hold an export.json
    mine.mkdir()
    (mine / "export.json").write_text('{"task": "export", "parts": {"vae": "vae"}}')
    (mine / "vae").mkdir()
    (mine / "vae" / "results.csv").write_text("1,2\n")
    before = snapshot(mine)
    one_out_line(export([ckpt, f"out={mine}", "overwrite=true"], logs))
    assert snapshot(mine) == before and temporaries(mine) == []


def test_a_failed_reexport_leaves_the_earlier_export_intact(exportable, tmp_path, monkeypatch) -> None:
    import ldmlab.interop.diffusers_folder

    ckpt, logs, out = f"ckpt={exportable['ae']}", exportable["logs"], tmp_path / "vae_only"
    assert export([ckpt, f"out={out}"], logs).returncode == 0
    before = snapshot(out)
    save_vae = ldmlab.interop.diffusers_folder.save_vae

    def written_then_failed(*args):
        save_vae(*args)
        raise RuntimeError("a check failed after the VAE was written")

    monkeypatch.setattr(ldmlab.interop.diffusers_folder, "save_vae", written_then_failed)  # forks inherit it
    failed = export([ckpt, f"out={out}", "overwrite=true"], logs)
    assert failed.returncode != 0 and "a check failed after the VAE was written" in failed.stderr
    assert snapshot(out) == before and temporaries(out) == []


@pytest.mark.parametrize("case", ["link", "file", "under_a_file"])
def test_out_that_is_a_link_or_a_file_is_one_line_before_any_work(exportable, tmp_path, monkeypatch, case):
    import ldmlab.commands.export

    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "folder")
    out = {"link": tmp_path / "link", "file": tmp_path / "notes.txt",
           "under_a_file": tmp_path / "notes.txt" / "exported"}[case]

    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was read before out was checked")

    monkeypatch.setattr(ldmlab.commands.export, "read_checkpoint", never)
    line = one_out_line(export([f"ckpt={exportable['ae']}", f"out={out}"], exportable["logs"]))
    assert str(out) in line and (tmp_path / "notes.txt").read_text() == "mine"
    monkeypatch.undo()
    fixed = export([f"ckpt={exportable['ae']}", line.split("Fix: ")[1]], exportable["logs"])
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == []  # nothing through the link


@torch.no_grad()
def test_dit_export_reloads_denoises_like_ldmlab_and_runs_in_dit_pipeline(patch_runs, exportable, tmp_path):
    out = tmp_path / "exported_dit"
    result = export([f"ckpt={patch_runs['dit']}", f"out={out}"], exportable["logs"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["conditioner", "export.json", "scheduler", "transformer",
                                                     "vae"]
    summary = json.loads((out / "export.json").read_text())
    assert summary["parts"] == ["transformer", "scheduler", "conditioner", "vae"]
    assert summary["max_abs_diff"]["transformer"] <= 1e-5

    module = load_ldm(patch_runs["dit"])
    dit, conditioner = module.ema.shadow["backbone"].eval(), module.ema.shadow["conditioner"].eval()
    assert dit.final.linear.weight.abs().max() > 0  # trained: the zero-initialised output moved
    transformer = DiTTransformer2DModel.from_pretrained(out / "transformer", low_cpu_mem_usage=False,
                                                        local_files_only=True, use_safetensors=True).eval()
    scheduler = DDIMScheduler.from_pretrained(out / "scheduler", local_files_only=True)
    # one deterministic DDIM step from pure noise, labels 3, 7 and the CFG null (row num_classes)
    labels, null = torch.tensor([3, 7]), conditioner.embedders["label"].num_classes
    uncond = conditioner.unconditional({"label": labels[:1]})["vector"]
    cond = {"vector": torch.cat([conditioner({"label": labels})["vector"], uncond])}
    x = torch.randn(3, dit.in_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    sampler = DDIMSampler(steps=2)
    first = sampler.transitions(module.schedule)[0]
    t = torch.full((3,), first.t)
    x0, eps = GuidedDenoiser(dit, module.parameterization, module.schedule, cond).predict(x, t)
    ours = sampler.step(x, x0, eps, first, None, None)
    scheduler.set_timesteps(2)
    assert int(scheduler.timesteps[0]) == first.t
    theirs_eps = transformer(x, timestep=t, class_labels=torch.cat([labels, torch.tensor([null])])).sample
    torch.testing.assert_close(theirs_eps, eps, rtol=1e-5, atol=1e-5 * float(eps.abs().max()))
    theirs = scheduler.step(theirs_eps, scheduler.timesteps[0], x).prev_sample
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5 * float(ours.abs().max()))

    vae = AutoencoderKL.from_pretrained(out / "vae", low_cpu_mem_usage=False, local_files_only=True)
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=scheduler)
    images = pipe(class_labels=[3, 7], guidance_scale=1.0, num_inference_steps=2, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, module.resolution, module.resolution, 1) and np.isfinite(images).all()


def test_uvit_export_is_one_error_line_naming_backbone(patch_runs, exportable, tmp_path) -> None:
    out = tmp_path / "never"
    result = export([f"ckpt={patch_runs['uvit']}", f"out={out}"], exportable["logs"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0] == ("error: backbone: UViT has no diffusers equivalent. "
                        "Fix: export a model trained with backbone=dit or backbone=small")
    assert not out.exists() and temporaries(out) == []
