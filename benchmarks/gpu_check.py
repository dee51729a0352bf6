"""The prepared GPU check (``make gpu-check``): real-scale step throughput, MFU and memory on one GPU.

Units (``sbs/gpu_cases.py``): the stage-2 training step of the base UNet, DiT-B/2 and DiT-XL/2 on
32×32×4 latents, ours eager and ``torch.compile``d beside diffusers' training-example recipe; the
stage-1 step at 256² RGB; DDIM-50 + CFG sampling (base UNet, 64 images, agreement checked). bf16
autocast by default. Per side: ms/step, img/s, TFLOP/s, MFU against ``ldmlab.utils.device_peak``
(the dense datasheet table on GPUs, a measured matmul peak on CPUs) and peak memory, written to
``<out>/<device>.json`` and ``<device>.md`` with the device, torch / CUDA / diffusers versions.

Every unit is guarded: its error (a compile on a bare machine, out of memory) is recorded in its
row and the run goes on; a unit not started within ``--budget-s`` is recorded as skipped (the
compiled variants run last). Exit 1 when a unit failed or an agreement check did not pass.

  .venv/bin/python benchmarks/gpu_check.py            # on the GPU machine: ≤ 8 min on an H100/H200
  .venv/bin/python benchmarks/gpu_check.py --quick    # every unit at tiny sizes on the CPU (< 60 s)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import torch
from sbs.common import Settings
from sbs.gpu_cases import Measured, Unit, units
from sbs.report import cpu_model

from ldmlab.utils.device_peak import DevicePeak, device_peak

RESULTS = Path(__file__).resolve().parent / "results" / "gpu"
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 1 warm-up + 1 repeat, compile with the 'eager' backend (CPU)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="default: cuda when available (cpu with --quick)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16",
                        help="bf16 = autocast (bf16-mixed)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per side (default 10; quick 1)")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="start no unit after this many seconds (default 330, so that the last compile "
                             "ends by ~8 min)")
    parser.add_argument("--cases", default=None, help="comma-separated subset of the case names")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for <device>.json/.md (default {RESULTS}; --quick: a temporary folder)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):  # per-unit Trainer chatter
        logging.getLogger(name).setLevel(logging.WARNING)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    s = Settings(device, args.dtype, torch.get_num_threads(), args.repeats or (1 if args.quick else 10),
                 1 if args.quick else 3, args.quick)
    todo = units("eager" if args.quick else "inductor")
    if args.cases:
        if unknown := set(args.cases.split(",")) - {u.case for u in todo}:
            parser.error(f"unknown cases {sorted(unknown)}; choose from {sorted({u.case for u in todo})}")
        todo = [u for u in todo if u.case in args.cases.split(",")]
    peak = device_peak(torch.device(device), DTYPES[args.dtype])
    env = environment(s, peak)
    print(f"gpu check | {env['device']} | torch {env['torch']} cuda {env['cuda']} | {s.dtype} | "
          f"peak {_num(peak.flops and peak.flops / 1e12)} TFLOP/s ({peak.source})", flush=True)
    started = time.perf_counter()
    rows = run_units(todo, s, peak, args.budget_s, started)
    env["wall_s"] = round(time.perf_counter() - started, 1)
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu-check-quick-")) if args.quick else RESULTS)
    paths = write(rows, env, out)
    print(markdown_table(rows))
    print(f"wall {env['wall_s']} s; wrote {paths[0]} and {paths[1]}")
    failed = any("error" in r or r.get("agreement") == "FAIL" for r in rows)
    return 1 if failed else 0


def run_units(todo: list[Unit], s: Settings, peak: DevicePeak, budget_s: float, started: float) -> list[dict]:
    """Each unit in order (``late`` ones last), guarded; one row per measured side, error or skip."""
    rows = []
    for unit in sorted(todo, key=lambda u: u.late):
        if time.perf_counter() - started > budget_s:
            rows.append({"case": unit.case, "side": unit.side,
                         "skipped": f"time budget of {budget_s:g} s spent"})
        else:
            try:
                rows += [record(m, peak) for m in unit.run(s)]
            except Exception as err:  # noqa: BLE001 - recorded, and the next unit runs
                message = " ".join(str(err).split())[:300]
                rows.append({"case": unit.case, "side": unit.side,
                             "error": f"{type(err).__name__}: {message}"})
        print(markdown_row(rows[-1]), flush=True)
        _free()
    return rows


def record(m: Measured, peak: DevicePeak) -> dict:
    """One side's row: rates from the median seconds, MFU against the device peak."""
    flops_per_s = m.flops / m.seconds if m.flops else None
    return {"case": m.case, "side": m.side, "batch": m.batch, "ms_per_step": m.seconds * 1e3,
            "img_per_s": m.batch / m.seconds, "tflops_per_s": flops_per_s and flops_per_s / 1e12,
            "mfu": flops_per_s / peak.flops if flops_per_s and peak.flops else None,
            "peak_mem_mb": round(m.mem_mb, 1), "params": m.params, **m.extra}


def _free() -> None:
    gc.collect()
    torch._dynamo.reset()  # compiled graphs of the last unit
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def environment(s: Settings, peak: DevicePeak) -> dict:
    import diffusers

    cuda = s.device == "cuda"
    return {"device": torch.cuda.get_device_name() if cuda else cpu_model(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "diffusers": diffusers.__version__, "python": platform.python_version(), "dtype": s.dtype,
            "threads": torch.get_num_threads(), "repeats": s.repeats, "warmup": s.warmup, "quick": s.quick,
            "peak_tflops_per_s": peak.flops and peak.flops / 1e12, "peak_source": peak.source,
            "peak_device": peak.device, "commit": _commit(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None


COLUMNS = ("case", "side", "B", "ms/step", "img/s", "TFLOP/s", "MFU", "step mem MiB", "params M", "notes")


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def markdown_row(r: dict) -> str:
    if "batch" not in r:
        return f"| {r['case']} | {r['side']} | | | | | | | | {r.get('error') or r.get('skipped')} |"
    notes = [f"{k} {r[k]}" for k in ("first_call_s", "resident_mb", "steps", "agreement", "max_abs_diff")
             if r.get(k)]
    mfu = "–" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
    return (f"| {r['case']} | {r['side']} | {r['batch']} | {r['ms_per_step']:.1f} | "
            f"{_num(r['img_per_s'], 4)} | {_num(r['tflops_per_s'])} | {mfu} | {r['peak_mem_mb']:.0f} | "
            f"{r['params'] / 1e6:.1f} | {'; '.join(notes)} |")


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
    return "\n".join([head, *map(markdown_row, rows)])


def write(rows: list[dict], env: dict, out: Path) -> tuple[Path, Path]:
    """``<out>/<device slug>.json`` (environment + rows) and ``.md`` (environment lines + table)."""
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", env["device"].lower()).strip("-") or "device"
    json_path, md_path = out / f"{slug}.json", out / f"{slug}.md"
    json_path.write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    lines = [f"# GPU check: {env['device']}", "",
             *(f"- {k}: {v}" for k, v in env.items() if k != "device"), "",
             "MFU: model FLOPs per second over the peak above (stage 2: 3 × forward × B; DDIM: steps × 2N ×"
             " forward; stage 1: one step counted). step mem: peak extra memory of one step over the"
             " resident weights and optimiser state.", "", markdown_table(rows), ""]
    md_path.write_text("\n".join(lines))
    return json_path, md_path


if __name__ == "__main__":
    sys.exit(main())
