"""Every bad input a user can type ends with one line naming the real config key, exit status 2,
no traceback and no checkpoint; the suggested fix (a ``key=value`` override) composes with the
same command, and the fixed command runs past that error (to the end where ``run_fix``; else
until another key's error or the time limit) — except a fix that is an example path to a file
of the user's own (``fix_is_example``).

Most cases run in a fork of the test process (``run_forked``: same argv, fds and exit status as
the CLI, without 6 s of interpreter start); one case per entry point runs as a real subprocess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ENTRY_CONFIG, TINY_AE, TINY_LDM, compose_config, run_cli, run_forked

AE = [*TINY_AE, "trainer.max_epochs=1"]
LDM = ["first_stage.ckpt={ae}", "logger=none", *TINY_LDM]
SAMPLE = ["ckpt={ldm}", "num_samples=2", "sampler.steps=2"]
HYBRID = [a for a in LDM if not a.startswith("conditioner_context_dim")] + ["generator_ckpt={ae}"]
ES = (*HYBRID, "experiment=es_ddpm")
SEMANTIC = ("logger=none", "data.train_subset=32", "data.val_subset=16", "data.batch_size=16",
            "backbone.model_channels=16", "backbone.num_heads=2", "semantic_dim=8",
            "conditioner.embedders.z_sem.ch=8", "trainer.max_epochs=1", "module.warmup_steps=0",
            "callbacks.image_logger=null")
INVERT = ("ckpt={ldm}", "num_images=2", "batch_size=2", "lpips=false", "sampler.steps=3")
OVERRIDE = re.compile(r"(\+?[A-Za-z_][\w.]*)=(\[[^\]]*\]|[^\s,;?)]+)")


@dataclass(frozen=True)
class Case:
    name: str
    entry: str
    args: tuple[str, ...]
    key: str
    config: str | None = None
    mentions: str = ""         # something else the line must name (e.g. the bad file)
    has_fix: bool = True       # the fix holds a key=value override
    run_fix: bool = False      # the fixed command runs to the end (training: one batch, trainer.fast_dev_run)
    fix_is_example: bool = False  # the fix names a file of the user's (e.g. ckpt=logs/...): it only composes
    fix_args: tuple[str, ...] = ()  # cheap settings for the fixed run, checked after the case's key
    fix_timeout: int = 300     # still running then: past the error (its check comes first)
    subprocess: bool = False   # through the real CLI instead of a fork
    slow: bool = False         # only in `make test-all` (a path another case already covers)


CASES = [
    Case("experiment_key_of_another_backbone", "ldmlab.commands.train",
         ("logger=none", "experiment=ldm_pixel", "backbone=dit"), "backbone.model_channels",
         config="train_ldm", mentions="~backbone.model_channels", has_fix=False),
    Case("corrupt_image_in_worker", "ldmlab.commands.train", (*AE, "data=image_folder", "data.root={images}",
         "data.num_workers=2", "data.resolution=32", "data.batch_size=4"), "data.root",
         mentions="bad.png", has_fix=False),
    Case("negative_guidance_scale", "ldmlab.commands.sample", (*SAMPLE, "guidance.scale=-1"),
         "guidance.scale", run_fix=True, subprocess=True),
    Case("negative_lr", "ldmlab.commands.train", (*AE, "module.optimizer.lr=-0.002"), "module.optimizer.lr",
         run_fix=True),
    Case("negative_disc_lr", "ldmlab.commands.train", (*AE, "module.disc_optimizer.lr=-4e-4"),
         "module.disc_optimizer.lr"),
    Case("negative_reg_weight", "ldmlab.commands.train", (*AE, "loss.reg_weight=-1e-6"), "loss.reg_weight",
         run_fix=True),
    Case("negative_perceptual_weight", "ldmlab.commands.train", (*AE, "loss.perceptual_weight=-0.25"),
         "loss.perceptual_weight"),
    Case("text_file_as_sample_ckpt", "ldmlab.commands.sample", ("ckpt={text}",), "ckpt",
         mentions="notes.ckpt", fix_is_example=True),
    Case("truncated_sample_ckpt", "ldmlab.commands.sample", ("ckpt={truncated}",), "ckpt",
         mentions="truncated.ckpt", fix_is_example=True),
    Case("text_file_as_evaluate_ckpt", "ldmlab.commands.evaluate", ("ckpt={text}",), "ckpt",
         mentions="notes.ckpt", fix_is_example=True),
    Case("truncated_evaluate_ckpt", "ldmlab.commands.evaluate", ("ckpt={truncated}",), "ckpt",
         mentions="truncated.ckpt", fix_is_example=True),
    Case("zero_batch_size", "ldmlab.commands.train", (*AE, "data.batch_size=0"), "data.batch_size",
         run_fix=True),
    Case("guidance_rescale_2_sample", "ldmlab.commands.sample", (*SAMPLE, "guidance.rescale=2"),
         "guidance.rescale", run_fix=True),
    Case("guidance_rescale_2_evaluate", "ldmlab.commands.evaluate", ("ckpt={ldm}", "guidance.rescale=2"),
         "guidance.rescale", subprocess=True, fix_args=("num_samples=2",)),
    Case("steps_above_T_sample", "ldmlab.commands.sample",
         ("ckpt={ldm}", "num_samples=2", "sampler.steps=5000"), "sampler.steps"),
    Case("steps_above_T_evaluate", "ldmlab.commands.evaluate",
         ("ckpt={ldm}", "sampler=ddim", "sampler.steps=5000"), "sampler.steps", fix_args=("num_samples=2",)),
    Case("text_file_as_ckpt_path", "ldmlab.commands.train", (*AE, "ckpt_path={text}"), "ckpt_path",
         run_fix=True),
    Case("stage2_ckpt_as_ckpt_path", "ldmlab.commands.train", (*AE, "ckpt_path={ldm}"), "ckpt_path",
         mentions="train_ldm"),
    Case("too_few_batches_for_scale_fit", "ldmlab.commands.train", (*LDM, "module.scale_fit_batches=5"),
         "module.scale_fit_batches", config="train_ldm", run_fix=True),
    Case("fewer_class_rows_than_classes", "ldmlab.commands.train",
         (*LDM, "conditioner.embedders.label.num_classes=5"),
         "conditioner.embedders.label.num_classes", config="train_ldm", run_fix=True),
    Case("unknown_group_option", "ldmlab.commands.sample", (*SAMPLE, "sampler=dddim"), "sampler",
         run_fix=True),
    Case("typo_key", "ldmlab.commands.train", (*AE, "trainer.max_epoch=1"), "trainer.max_epoch",
         run_fix=True),
    Case("mismatched_first_stage", "ldmlab.commands.train", (*LDM, "first_stage_embed_dim=8"),
         "first_stage_embed_dim", config="train_ldm", run_fix=True),
    Case("t_prime_above_T", "ldmlab.commands.train", (*ES, "diffusion.timestep_sampler.t_max=2000"),
         "diffusion.timestep_sampler.t_max", config="train_ldm", run_fix=True),
    Case("t_prime_zero", "ldmlab.commands.train", (*ES, "diffusion.timestep_sampler.t_max=0"),
         "diffusion.timestep_sampler.t_max", config="train_ldm", run_fix=True),
    Case("truncated_without_start", "ldmlab.commands.train", (*ES, "module.start=null"),
         "module.start", config="train_ldm", run_fix=True),
    Case("refiner_on_another_resolution", "ldmlab.commands.train",
         (*HYBRID, "experiment=diffusevae", "conditioner.embedders.x_hat.size=16"),
         "conditioner.embedders.x_hat.size", config="train_ldm", run_fix=True),
    Case("centred_process_on_latents", "ldmlab.commands.train",
         (*HYBRID, "experiment=diffusevae", "conditioner.embedders.x_hat.centre_forward_process=true"),
         "conditioner.embedders.x_hat.centre_forward_process", config="train_ldm", run_fix=True),
    Case("missing_generator_ckpt", "ldmlab.commands.train",
         (*HYBRID[:-1], "experiment=diffusevae", "generator_ckpt=/nonexistent/vae.ckpt"), "generator_ckpt",
         config="train_ldm", mentions="/nonexistent/vae.ckpt", fix_is_example=True),
    Case("invert_stochastic_ddim", "ldmlab.commands.invert", (*INVERT, "sampler.eta=1"), "sampler.eta",
         run_fix=True),
    Case("invert_with_ddpm", "ldmlab.commands.invert", (*INVERT, "sampler=ddpm"), "sampler", run_fix=True,
         slow=True),
    Case("invert_more_images_than_the_split", "ldmlab.commands.invert", (*INVERT, "num_images=20000"),
         "num_images", fix_timeout=12),  # the error run takes ~2 s: the check is passed well before
    Case("interpolate_one_frame", "ldmlab.commands.interpolate",
         ("ckpt={ldm}", "num_pairs=1", "sampler.steps=3", "frames=1"), "frames", run_fix=True),
    Case("latent_ddim_without_a_diffae", "ldmlab.commands.train",
         ("logger=none", "experiment=diffae_latent_ddim"),
         "first_stage.ckpt", config="train_ldm", fix_is_example=True),
    Case("latent_ddim_of_another_width", "ldmlab.commands.train",
         ("logger=none", "experiment=diffae_latent_ddim",
          "first_stage.ckpt={diffae}", "first_stage_embed_dim=16", "data.train_subset=32",
          "data.val_subset=16", "data.batch_size=16", "module.scale_fit_batches=2",
          "first_stage.decode_steps=2", "callbacks.image_logger=null", "sampler.steps=3",
          "backbone.model_channels=32", "backbone.num_layers=2"),
         "first_stage_embed_dim", config="train_ldm", run_fix=True),
    Case("unknown_posterior", "ldmlab.commands.train", (*SEMANTIC, "experiment=diffae",
         "conditioner.embedders.z_sem.posterior=gauss"), "conditioner.embedders.z_sem.posterior",
         config="train_ldm", run_fix=True),
    Case("mi_weight_above_one", "ldmlab.commands.train", (*SEMANTIC, "experiment=infodiffusion",
         "diffusion.objective.regularizer.mi_weight=2"), "diffusion.objective.regularizer.mi_weight",
         config="train_ldm", run_fix=True, slow=True),
    Case("kl_on_a_deterministic_encoder", "ldmlab.commands.train", (*SEMANTIC, "experiment=infodiffusion",
         "conditioner.embedders.z_sem.posterior=deterministic",
         "diffusion.objective.regularizer.mi_weight=0"),
         "diffusion.objective.regularizer.mi_weight", config="train_ldm", run_fix=True),
    Case("missing_diffusers_vae", "ldmlab.commands.train", ("logger=none", *TINY_LDM, "first_stage=diffusers",
         "first_stage.path=/nonexistent/vae"), "first_stage.path", config="train_ldm",
         mentions="/nonexistent/vae", fix_is_example=True),
    Case("diffusers_vae_path_not_a_vae", "ldmlab.commands.train",
         ("logger=none", *TINY_LDM, "first_stage=diffusers", "first_stage.path={images}"), "first_stage.path",
         config="train_ldm", mentions="has no config.json", fix_is_example=True),
    Case("missing_lpips_weights", "ldmlab.commands.train",
         (*AE, "loss.lpips.weights_path=/nonexistent/lpips.safetensors"), "loss.lpips.weights_path",
         run_fix=True),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_ae_ckpt, tiny_ldm_run) -> dict[str, str]:
    """The files the cases hand in, outside every case's log dir."""
    root = tmp_path_factory.mktemp("inputs")
    ldm = (tiny_ldm_run / "train_ldm" / "latest" / "checkpoints" / "last.ckpt").resolve()
    (root / "notes.ckpt").write_text("not a checkpoint\n")
    (root / "truncated.ckpt").write_bytes(ldm.read_bytes()[: ldm.stat().st_size // 2])
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    (images / "bad.png").write_bytes(b"this is not a png")
    diffae = run_forked("ldmlab.commands.train", [*SEMANTIC, "experiment=diffae", "sampler.steps=3"],
                        root / "diffae", "train_ldm")
    assert diffae.returncode == 0, diffae.stderr[-3000:]
    diffae_ckpt = (root / "diffae" / "train_ldm" / "latest" / "checkpoints" / "last.ckpt").resolve()
    return {"ae": str(tiny_ae_ckpt), "ldm": str(ldm), "diffae": str(diffae_ckpt),
            "text": str(root / "notes.ckpt"), "truncated": str(root / "truncated.ckpt"),
            "images": str(images)}


def suggested_override(line: str) -> str | None:
    """The first ``key=value`` of the line's ``Fix:`` part."""
    match = OVERRIDE.search(line.split(" Fix: ", 1)[-1]) if " Fix: " in line else None
    return f"{match.group(1)}={match.group(2).rstrip('.')}" if match else None


def with_fix(args: list[str], key: str, override: str) -> list[str]:
    """``args`` without the overrides of the reported key or the fix's key, plus the fix."""
    keys = {key, override.split("=", 1)[0].lstrip("+")}
    return [a for a in args if a.split("=", 1)[0].lstrip("+~") not in keys] + [override]


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
                         ids=[c.name for c in CASES])
def test_bad_input_is_one_line_with_a_fix_that_composes(case: Case, inputs, tmp_path):
    args = [a.format(**inputs) for a in case.args]
    out = (run_cli if case.subprocess else run_forked)(case.entry, args, tmp_path, case.config)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert lines and lines[-1].startswith(f"error: {case.key}:"), out.stderr[-3000:]
    assert len(lines) == 1, f"stderr is the error line only: {out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr
    assert case.mentions in lines[-1]
    assert not list(tmp_path.rglob("*.ckpt")), "no checkpoint is written"
    print(f"{case.name} | {lines[-1]} | {out.returncode}")

    override = suggested_override(lines[-1])
    assert (override is not None) == case.has_fix, lines[-1]
    if override is None:
        return
    fixed = with_fix(args, case.key, override)
    compose_config(case.config or ENTRY_CONFIG[case.entry], fixed)  # raises if it does not compose
    if case.fix_is_example:
        return
    extra = ["trainer.fast_dev_run=true"] if case.entry == "ldmlab.commands.train" else list(case.fix_args)
    again = run_forked(case.entry, [*fixed, *extra], tmp_path / "fixed", case.config,
                       timeout=case.fix_timeout)
    if case.run_fix:
        assert again.returncode == 0, f"{override}: {again.stderr[-3000:]}"
    assert got_past(again, case.key), f"{override} does not get past the error: {again.stderr[-3000:]}"


def got_past(out, key: str) -> bool:
    """The run ended well, or with another key's error, or was still working at the time limit."""
    last = (out.stderr.strip().splitlines() or [""])[-1]
    other_key = last.startswith("error: ") and not last.startswith(f"error: {key}:")
    return out.returncode in (0, -9) or (out.returncode == 2 and other_key)
