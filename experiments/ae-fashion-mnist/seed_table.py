"""Before / after the GAN phase over seeds: mean ± sample std and the paired change.

    .venv/bin/python experiments/ae-fashion-mnist/seed_table.py BEFORE.jsonl NAME=RUN_GLOB [NAME=RUN_GLOB ...]

BEFORE.jsonl: `validate_ckpt.py` lines of the checkpoints saved at the GAN start (one per seed);
each NAME=RUN_GLOB: train_ae run dirs (their summary.json's final validation), one per seed. Rows
are paired by seed (the `seed` of the run's stored config; the checkpoint path's `_s<seed>`).
Prints a markdown table.
"""

from __future__ import annotations

import glob
import json
import re
import statistics
import sys
from pathlib import Path

METRICS = (("val/psnr", "PSNR (dB)", "{:.2f}"), ("val/ssim", "SSIM", "{:.3f}"),
           ("val/lpips", "LPIPS", "{:.4f}"), ("val/rfid_inception", "rFID (Inception 64-d)", "{:.4f}"))


def seed_of(text: str) -> int:
    return int(re.search(r"_s(\d+)", text).group(1))


def runs(pattern: str) -> dict[int, dict]:
    out = {}
    for run in sorted(glob.glob(pattern)):
        if not (Path(run) / "summary.json").is_file():  # still running
            continue
        summary = json.loads((Path(run) / "summary.json").read_text())
        out[seed_of(run)] = summary["metrics"] | {"step": summary["global_step"]}
    return out


def cell(values: list[float], fmt: str, signed: bool = False) -> str:
    spread = f" ± {fmt.format(statistics.stdev(values))}" if len(values) > 1 else ""
    return (fmt.replace("{:", "{:+") if signed else fmt).format(statistics.fmean(values)) + spread


def main(before_file: str, *named: str) -> None:
    lines = map(json.loads, Path(before_file).read_text().splitlines())
    before = {seed_of(line["ckpt"]): line for line in lines}
    print("| | seeds | " + " | ".join(label for _, label, _ in METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    seeds = sorted(before)
    print(f"| before the GAN (step {before[seeds[0]]['step']}) | {len(seeds)} | "
          + " | ".join(cell([before[s][k] for s in seeds], fmt) for k, _, fmt in METRICS) + " |")
    for item in named:
        name, pattern = item.split("=", 1)
        after = runs(pattern)
        paired = [s for s in seeds if s in after]
        cells = []
        for key, _, fmt in METRICS:
            change = cell([after[s][key] - before[s][key] for s in paired], fmt, signed=True)
            cells.append(f"{cell([after[s][key] for s in paired], fmt)} (Δ {change})")
        print(f"| {name} | {len(paired)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
