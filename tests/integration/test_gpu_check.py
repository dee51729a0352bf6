"""``benchmarks/gpu_check.py`` (``make gpu-check``): the guarded runner, the rows' arithmetic, the
written JSON / markdown, the stage-2 units at tiny sizes; the whole ``--quick`` run (slow)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check

    return gpu_check


def _settings(quick=True):
    from sbs.common import Settings

    return Settings("cpu", "bf16", 1, 1, 1, quick)


def test_a_failing_unit_is_recorded_and_the_rest_run_until_the_budget(gpu_check):
    from sbs.gpu_cases import Measured, Unit

    from ldmlab.utils.device_peak import DevicePeak

    def fails(s):
        raise RuntimeError("compile needs a C compiler\n  on this machine")

    def works(case):
        return lambda s: [Measured(case, "ours", 4, 0.5, 10, 2e12, 1.0)]

    todo = [Unit("z", "late", works("z"), late=True), Unit("a", "ours compile", fails),
            Unit("b", "ours", works("b"))]
    peak = DevicePeak(8e12, "table", "NVIDIA H200")
    rows = gpu_check.run_units(todo, _settings(), peak, budget_s=60, started=time.perf_counter())
    assert rows[0] == {"case": "a", "side": "ours compile",
                       "error": "RuntimeError: compile needs a C compiler on this machine"}
    assert [r["case"] for r in rows] == ["a", "b", "z"]  # late units last
    assert rows[1]["img_per_s"] == 8 and rows[1]["tflops_per_s"] == 4 and rows[1]["mfu"] == 0.5
    skipped = gpu_check.run_units(todo[:1], _settings(), peak, budget_s=1, started=-1e9)
    assert skipped == [{"case": "z", "side": "late", "skipped": "time budget of 1 s spent"}]


def test_written_json_and_markdown_name_the_device_and_hold_every_row(gpu_check, tmp_path):
    rows = [{"case": "c", "side": "ours eager", "batch": 2, "ms_per_step": 250.0, "img_per_s": 8.0,
             "tflops_per_s": 0.5, "mfu": 0.25, "peak_mem_mb": 12.0, "params": 3_000_000, "first_call_s": 1.5},
            {"case": "c", "side": "diffusers", "error": "OutOfMemoryError: CUDA out of memory"}]
    env = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda": "13.0"}
    json_path, md_path = gpu_check.write(rows, env, tmp_path)
    assert json_path.name == "nvidia-h100-80gb-hbm3.json" and md_path.name == "nvidia-h100-80gb-hbm3.md"
    assert json.loads(json_path.read_text()) == {"environment": env, "rows": rows}
    md = md_path.read_text()
    assert "- cuda: 13.0" in md
    assert "| c | ours eager | 2 | 250.0 | 8 | 0.5 | 25.0 % | 12 | 3.0 | first_call_s 1.5 |" in md
    assert "| c | diffusers | | | | | | | | OutOfMemoryError: CUDA out of memory |" in md


def test_stage2_units_of_a_tiny_dit_time_ours_eager_compiled_and_diffusers(gpu_check):
    from sbs.gpu_cases import units

    from ldmlab.utils.device_peak import DevicePeak

    dit = [u for u in units("eager") if u.case == "stage2_dit_b2"]
    assert [u.side for u in dit] == ["ours eager", "diffusers", "ours compile (eager)"]
    rows = gpu_check.run_units(dit, _settings(), DevicePeak(1e12, "measured", "cpu"), 60, time.perf_counter())
    assert [r["side"] for r in rows] == ["ours eager", "diffusers", "ours compile (eager)"], rows
    # every side is credited with the same FLOPs per step: 3 × the DiT's forward × B
    flops = [r["tflops_per_s"] * 1e12 * r["ms_per_step"] / 1e3 for r in rows]
    assert all(math.isclose(f, flops[0]) for f in flops) and flops[0] > 0
    assert all(r["batch"] == 2 and r["img_per_s"] > 0 and 0 < r["mfu"] < math.inf for r in rows)
    assert rows[0]["params"] == rows[2]["params"] > 0


@pytest.mark.slow
def test_quick_run_covers_every_case_on_the_cpu(tmp_path):
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--quick", "--out", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (result,) = tmp_path.glob("*.json")
    data = json.loads(result.read_text())
    assert data["environment"]["peak_source"] == "measured" and data["environment"]["quick"] is True
    sides = {(r["case"], r["side"]) for r in data["rows"]}
    for case in ("stage2_unet_base", "stage2_dit_b2", "stage2_dit_xl2"):
        assert {(case, "ours eager"), (case, "diffusers"), (case, "ours compile (eager)")} <= sides
    for case in ("stage1_256", "ddim50_cfg"):
        assert {(case, "ours"), (case, "diffusers")} <= sides
    assert all(r["mfu"] > 0 and r["ms_per_step"] > 0 for r in data["rows"]), data["rows"]
    assert all(r["agreement"] == "PASS" for r in data["rows"] if r["case"] == "ddim50_cfg")
    assert torch.isfinite(torch.tensor([r["tflops_per_s"] for r in data["rows"]])).all()
    assert result.with_suffix(".md").read_text().count("\n| ") == len(data["rows"]) + 1  # + the header
