"""DiffAE, LRDM, InfoDiffusion and DiffAE's latent DDIM as configurations of the same engine, end to
end through the CLI on real Fashion-MNIST, with ``make invert`` / ``make interpolate``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmlab.models.restore import load_ldm
from ldmlab.semantic.encoder import SemanticEncoderEmbedder
from ldmlab.semantic.first_stage import SemanticFirstStage
from tests.conftest import REPO, run_forked

RUN = ["data.train_subset=32", "data.val_subset=16", "data.batch_size=16", "trainer.max_epochs=1",
       "module.warmup_steps=0", "callbacks.image_logger=null", "logger=none", "sampler.steps=5"]
SEMANTIC = [*RUN, "backbone.model_channels=16", "backbone.num_heads=2", "semantic_dim=8",
            "conditioner.embedders.z_sem.ch=8"]
LATENT_DDIM = [*RUN, "first_stage_embed_dim=8", "backbone.model_channels=32", "backbone.num_layers=2",
               "first_stage.decode_steps=3", "module.scale_fit_batches=2"]
INVERT = ["sampler.steps=8", "num_images=4", "batch_size=4", "lpips=false", "num_show=4"]


def train(log_dir: Path, *args: str, base: tuple[str, ...] = tuple(SEMANTIC)) -> dict:
    out = run_forked("ldmlab.commands.train", [*base, *args], log_dir, "train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((log_dir / "train_ldm" / "latest" / "summary.json").read_text())


def ckpt_of(log_dir: Path) -> Path:
    return (log_dir / "train_ldm" / "latest" / "checkpoints" / "last.ckpt").resolve()


def run_ok(entry: str, log_dir: Path, *args: str) -> dict:
    out = run_forked(entry, list(args), log_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    run = log_dir / entry.rsplit(".", 1)[1] / "latest"
    summary = json.loads((run / "summary.json").read_text())
    return summary | {"files": {name: run / file for name, file in summary["files"].items()}}  # run-relative


@pytest.fixture(scope="module")
def diffae_run(tmp_path_factory, fmnist_dir) -> Path:
    log_dir = tmp_path_factory.mktemp("diffae")
    summary = train(log_dir, "experiment=diffae")
    assert np.isfinite(summary["metrics"]["val/loss"])
    return log_dir


def test_diffae_checkpoint_restores_its_semantic_encoder(diffae_run):
    module = load_ldm(ckpt_of(diffae_run))
    encoder = module.ema.shadow["conditioner"].embedders["z_sem"]
    assert isinstance(encoder, SemanticEncoderEmbedder) and encoder.embed_dim == 8
    assert module.model["backbone"].vector_dim == 8


def test_invert_round_trips_a_trained_model_and_refinement_tightens_it(diffae_run, tmp_path):
    ckpt = f"ckpt={ckpt_of(diffae_run)}"
    plain = run_ok("ldmlab.commands.invert", tmp_path / "plain", ckpt, *INVERT)
    exact = run_ok("ldmlab.commands.invert", tmp_path / "exact", ckpt, *INVERT, "fixed_point_iters=8")
    # the fixed-point refinement makes DDIM decoding invert the encoding closely, the plain
    # inversion is first-order only, and fresh noise keeps only what z_sem carries
    assert exact["inverted"]["psnr"] > 40.0, exact
    assert exact["inverted"]["psnr"] > plain["inverted"]["psnr"] + 3.0, (plain, exact)
    assert exact["random_noise"]["psnr"] < exact["inverted"]["psnr"] - 10.0
    assert exact["fixed_point_iters"] == 8 and exact["num_images"] == 4
    grid = Image.open(exact["files"]["grid"])
    assert grid.size == (4 * 33 + 1, 3 * 33 + 1)  # rows: originals, inverted, fresh noise


def test_invert_reports_lpips_with_the_offline_weights(diffae_run, tmp_path):
    summary = run_ok("ldmlab.commands.invert", tmp_path, f"ckpt={ckpt_of(diffae_run)}", *INVERT[:-2],
                     "lpips=true", "num_images=2", "batch_size=2")
    assert 0.0 <= summary["inverted"]["lpips"] < summary["random_noise"]["lpips"]


def test_interpolate_writes_strips_and_their_smoothness(diffae_run, tmp_path):
    summary = run_ok("ldmlab.commands.interpolate", tmp_path, f"ckpt={ckpt_of(diffae_run)}", "num_pairs=2",
                     "frames=4", "sampler.steps=5")
    scores = summary["smoothness_lpips"]
    assert scores["neighbour_mean"] > 0 and scores["max_over_mean"] >= 1.0
    assert Image.open(summary["files"]["strips"]).size == (6 * 33 + 1, 2 * 33 + 1)
    semantic = run_ok("ldmlab.commands.interpolate", tmp_path / "z", f"ckpt={ckpt_of(diffae_run)}",
                      "num_pairs=2", "frames=3", "sampler.steps=5", "semantic_only=true")
    assert semantic["semantic_only"] is True and np.isfinite(semantic["smoothness_lpips"]["neighbour_mean"])


def test_latent_ddim_trains_on_the_diffae_and_samples_images(diffae_run, tmp_path):
    summary = train(tmp_path, "experiment=diffae_latent_ddim", f"first_stage.ckpt={ckpt_of(diffae_run)}",
                    base=tuple(LATENT_DDIM))
    assert np.isfinite(summary["metrics"]["val/loss"])
    module = load_ldm(ckpt_of(tmp_path))  # restores without reading the DiffAE file again
    stage = module.first_stage
    assert isinstance(stage, SemanticFirstStage) and bool(stage.scale_initialized)
    assert float(stage.std.min()) > 0 and not np.allclose(stage.mean.numpy(), 0)
    images = run_ok("ldmlab.commands.sample", tmp_path, f"ckpt={ckpt_of(tmp_path)}", "num_samples=3",
                    "sampler.steps=4", "guidance=none")
    pixels = np.load(Path(images["files"]["npz"]))["images"]
    assert pixels.shape == (3, 32, 32, 1)
    again = run_ok("ldmlab.commands.sample", tmp_path / "again", f"ckpt={ckpt_of(tmp_path)}", "num_samples=3",
                   "sampler.steps=4", "guidance=none")
    assert np.array_equal(np.load(Path(again["files"]["npz"]))["images"], pixels)  # seeded end to end


@pytest.mark.parametrize("experiment", ["lrdm", "infodiffusion"])
def test_regularised_presets_train_sample_the_prior_and_invert(experiment, tmp_path):
    summary = train(tmp_path, f"experiment={experiment}")
    assert np.isfinite(summary["metrics"]["val/loss"])
    encoder = load_ldm(ckpt_of(tmp_path)).ema.shadow["conditioner"].embedders["z_sem"]
    assert encoder.posterior_type == "gaussian" and encoder.time_conditioned == (experiment == "lrdm")
    sampled = run_ok("ldmlab.commands.sample", tmp_path, f"ckpt={ckpt_of(tmp_path)}", "num_samples=2",
                     "sampler.steps=4", "guidance=none")
    assert np.load(Path(sampled["files"]["npz"]))["images"].shape == (2, 32, 32, 1)
    inverted = run_ok("ldmlab.commands.invert", tmp_path, f"ckpt={ckpt_of(tmp_path)}", *INVERT,
                      "fixed_point_iters=8")
    assert inverted["inverted"]["psnr"] > 35.0, inverted


@pytest.mark.parametrize(("target", "args"), [
    ("invert", "num_images=2 batch_size=2 lpips=false sampler.steps=3 num_show=2"),
    pytest.param("interpolate", "num_pairs=1 frames=3 sampler.steps=3", marks=pytest.mark.slow),
])
def test_make_target_runs(target, args, diffae_run, tmp_path):
    make_args = f"ckpt={ckpt_of(diffae_run)} paths.log_dir={tmp_path} {args}"
    out = subprocess.run(["make", target, f"ARGS={make_args}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / target / "latest" / "summary.json").read_text())
    assert summary["task"] == target and summary["checkpoint"] == str(ckpt_of(diffae_run))
