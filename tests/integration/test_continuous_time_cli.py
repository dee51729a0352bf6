"""Flow matching and EDM through the CLI: a tiny run of each objective trains, samples with each of
its samplers (and guidance interval), is evaluated over steps, inverted, interpolated, and refuses classifier
guidance with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ldmlab.evaluation.table import read_csv
from tests.conftest import TINY_LDM, run_forked
from tests.integration.test_evaluate_cli import TINY as TINY_EVALUATE
from tests.unit.models.test_classifier import tiny_classifier_ckpt

RUN = [*TINY_LDM, "callbacks.image_logger.num_images=4", "logger=csv"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Forked CLI runs on the 2 busy cores: one OpenMP thread each."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module", params=["flow", "edm"])
def run(request, tmp_path_factory, tiny_ae_ckpt) -> tuple[str, Path]:
    """(objective, run dir) of a real tiny 1-epoch run of ``diffusion/objective=<objective>``."""
    log_dir = tmp_path_factory.mktemp(f"{request.param}_logs")
    out = run_forked("ldmlab.commands.train", [f"first_stage.ckpt={tiny_ae_ckpt}",
                                               f"diffusion/objective={request.param}", *RUN],
                     log_dir, config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return request.param, (log_dir / "train_ldm" / "latest").resolve()


def test_the_objective_trains_its_own_parts(run):
    objective, folder = run
    summary = json.loads((folder / "summary.json").read_text())
    assert np.isfinite(summary["metrics"]["val/loss"])
    text = (folder / summary["config"]).read_text()  # the resolved run config
    expected = {"flow": ("FlowSchedule", "VelocityParameterization", "LogitNormalTimesteps", "EulerSampler"),
                "edm": ("EDMSchedule", "EDMParameterization", "LogNormalTimesteps", "EDMSampler")}[objective]
    assert all(f".{name}\n" in text for name in expected), text[:3000]
    assert (folder / "images" / "samples_scale3_epoch000.png").is_file()


SAMPLERS = {"flow": ["euler", "heun", "sde", "dpmpp", "ddim"], "edm": ["edm", "heun", "dpmpp", "ddpm"]}


def test_every_sampler_of_the_process_draws_images(run, tmp_path):
    objective, folder = run
    for sampler in SAMPLERS[objective]:
        args = [f"sampler={sampler}", "sampler.steps=4", "num_samples=3", "guidance.scale=2",
                f"ckpt={folder}", f"paths.log_dir={tmp_path / sampler}"]
        out = run_forked("ldmlab.commands.sample", args, tmp_path / sampler)
        assert out.returncode == 0, (sampler, out.stderr[-3000:])
        data = np.load((tmp_path / sampler / "sample" / "latest" / "samples.npz").resolve())
        assert data["images"].shape == (3, 32, 32, 1) and data["images"].std() > 0, sampler


def test_interval_guidance_samples_and_the_evaluation_sweeps_steps(run, fmnist_dir, tmp_path_factory,
                                                                   tmp_path):
    objective, folder = run
    args = ["guidance=interval", "guidance.inner.scale=3", "num_samples=2", "sampler.steps=4",
            f"ckpt={folder}"]
    out = run_forked("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(np.load((tmp_path / "sample" / "latest" / "samples.npz").resolve())["guidance"]) == "interval"
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    args = [f"ckpt={folder}", "guidance_scales=[1,3]", f"metrics.classifier_ckpt={classifier}",
            f"metrics.cache_root={tmp_path / 'cache'}", *TINY_EVALUATE, "grid.steps=[2,4]"]
    out = run_forked("ldmlab.commands.evaluate", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_csv((tmp_path / "evaluate" / "latest").resolve() / "guidance_sweep.csv")
    points = [(r["sampler.steps"], r["guidance_scale"]) for r in rows]
    assert points == [(2, 1.0), (2, 3.0), (4, 1.0), (4, 3.0)]
    assert all(np.isfinite(r["fid_classifier"]) for r in rows)


def test_inversion_and_interpolation_run_and_classifier_guidance_is_refused(run, tmp_path):
    objective, folder = run
    out = run_forked("ldmlab.commands.invert", [f"ckpt={folder}", "num_images=4", "lpips=false",
                                                "sampler.steps=10"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(((tmp_path / "invert" / "latest").resolve() / "summary.json").read_text())
    # (the round trip's exactness on continuous processes: tests/unit/sampling/test_ddim_inversion.py;
    # the tiny autoencoder decodes anything to about the same image, so image PSNR says nothing here)
    assert all(np.isfinite(summary["x_T"][k]) for k in ("mean", "std")), summary
    out = run_forked("ldmlab.commands.interpolate", [f"ckpt={folder}", "sampler.steps=4"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert ((tmp_path / "interpolate" / "latest").resolve() / "interpolate.png").is_file()
    out = run_forked("ldmlab.commands.sample", [f"ckpt={folder}", "guidance=classifier",
                                                "guidance.classifier_ckpt=/nowhere.ckpt"], tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    assert "guidance.classifier_ckpt" in out.stderr
