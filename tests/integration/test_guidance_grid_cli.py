"""`make evaluate` with guidance settings as grid axes: interval bounds swept on a tiny LDM, and a
guidance without settings refused on one line before any work."""

from __future__ import annotations

import json

import pytest

from ldmlab.evaluation.table import read_csv
from tests.conftest import run_forked
from tests.integration.test_evaluate_cli import scored_args


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """CLI children on the 2 busy cores: one OpenMP thread each avoids spin-wait slowdowns."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_interval_bounds_are_grid_axes(tiny_ldm_run, fmnist_dir, tmp_path_factory, tmp_path):
    args = [*scored_args(tiny_ldm_run, fmnist_dir, tmp_path_factory, tmp_path), "guidance_scales=[3]",
            "guidance=interval", "+grid.guidance.sigma_high=[1,100]"]
    out = run_forked("ldmlab.commands.evaluate", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "evaluate" / "latest").resolve()
    rows = read_csv(run / "guidance_sweep.csv")
    assert [(r["guidance"], r["guidance.sigma_high"], r["guidance_scale"], r["seeds"]) for r in rows] == [
        ("interval", 1, 3.0, 1), ("interval", 100, 3.0, 1)]
    # 3 DDIM steps: σ̃ ≤ 1 guides only the cleanest step, σ̃ ≤ 100 every step, so the samples differ
    assert rows[0]["fid_classifier"] != rows[1]["fid_classifier"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["grid"] == {"guidance": {"sigma_high": [1, 100]}}
    assert f"sigma_high={summary['best']['guidance.sigma_high']}" in out.stdout


def test_a_guidance_without_settings_exits_2_on_one_line(tiny_ldm_run, tmp_path):
    out = run_forked("ldmlab.commands.evaluate", [f"ckpt={tiny_ldm_run / 'train_ldm' / 'latest'}",
                                                  "+grid.guidance.sigma_high=[1]"], tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert out.stderr.startswith(
        "error: grid.guidance.sigma_high: the cfg guidance has no settings to sweep. "
        "Fix: use guidance=interval (sigma_low, sigma_high) or drop grid.guidance.sigma_high")
