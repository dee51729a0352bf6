"""``make train-ldm`` writes the throughput telemetry: img/s, TFLOP/s, MFU against a peak whose source
it names, and the data-wait share, in ``summary.json`` and per window in the CSV log."""

from __future__ import annotations

import csv
import json
import math

from tests.conftest import TINY_LDM


def test_train_ldm_summary_has_throughput_peak_and_data_wait(tiny_ldm_run):
    run = (tiny_ldm_run / "train_ldm" / "latest").resolve()
    denoiser = json.loads((run / "summary.json").read_text())["denoiser"]
    assert {"data.train_subset=64", "data.batch_size=16"} <= set(TINY_LDM)
    assert denoiser["timed_steps"] == 64 // 16 - 1  # the first batch warms up
    assert denoiser["peak_source"] == "measured" and denoiser["peak_device"].startswith("cpu (1 threads")
    assert 0 < denoiser["peak_tflops_per_s"] < math.inf and 0 < denoiser["img_per_s"] < math.inf
    assert math.isclose(denoiser["mfu"], denoiser["tflops_per_s"] / denoiser["peak_tflops_per_s"])
    assert 0 <= denoiser["data_wait_frac"] < 1
    assert denoiser["data_wait_ms"] >= 0 and denoiser["compute_ms"] > 0
    with open(next(run.rglob("metrics.csv"))) as file:
        rows = [r for r in csv.DictReader(file) if r.get("train/data_wait_frac")]
    assert len(rows) == 1 and float(rows[0]["train/mfu"]) > 0  # one window, closed by validation
