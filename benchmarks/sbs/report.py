"""Printing and JSON results (``benchmarks/results/<case>.json``)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from sbs.common import Row, Settings

RESULTS = Path(__file__).resolve().parents[1] / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(s: Settings) -> dict:
    import diffusers

    return {"dtype": s.dtype, "threads": torch.get_num_threads(), "device": s.device,
            "torch": torch.__version__, "diffusers": diffusers.__version__, "cpu": cpu_model(),
            "gpu": torch.cuda.get_device_name() if s.device == "cuda" else None,
            "repeats": s.repeats, "warmup": s.warmup, "quick": s.quick}


def side(seconds: float, batch: int, n_params: int, mem: float) -> dict:
    return {"ms_per_step": seconds * 1e3, "img_per_s": batch / seconds, "peak_mem_mb": round(mem, 1),
            "params": n_params}


def line(row: Row) -> str:
    target = f"target ≥ {row.target:.1f}x {row.verdict}" if row.target else "(info)"
    return (f"{row.case:<18} B={row.batch:<3} ours {row.ours_s * 1e3:8.1f} ms  "
            f"theirs {row.theirs_s * 1e3:8.1f} ms"
            f"  ratio = {row.ratio:5.2f}x  {target}   mem ours/theirs {row.ours_mem_mb:.0f}/"
            f"{row.theirs_mem_mb:.0f} MiB  params {row.ours_params:,}/{row.theirs_params:,}")


def write(row: Row, s: Settings, out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"case": row.case, "what": row.what, "batch": row.batch,
              "ours": side(row.ours_s, row.batch, row.ours_params, row.ours_mem_mb),
              "theirs": side(row.theirs_s, row.batch, row.theirs_params, row.theirs_mem_mb),
              "ratio": row.ratio, "target": row.target, "verdict": row.verdict,
              **row.extra, **environment(s)}
    path = out_dir / f"{row.case}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
