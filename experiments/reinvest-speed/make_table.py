"""before/after table of the reinvest-speed study (run_study.sh's outputs) → results.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path

HERE = Path(__file__).parent


def row(name: str) -> str:
    summary = json.loads((HERE / f"{name}.summary.json").read_text())
    seconds = float((HERE / f"{name}.train_seconds").read_text())
    cache = summary.get("latent_cache") or {}
    sweep = list(csv.DictReader((HERE / f"{name}.guidance_sweep.csv").open()))
    per_scale = " / ".join(f"{float(r['fid_classifier']):.2f}" for r in sweep)
    accuracy = " / ".join(f"{float(r['accuracy_classifier']):.3f}" for r in sweep)
    inception = " / ".join(f"{float(r['fid_inception']):.3f}" for r in sweep)
    build = cache.get("build_seconds", "off")
    return (f"| {name} | {summary['global_step']} | {seconds:.0f} s (cache build: {build}) | "
            f"{summary['metrics']['val/loss']:.4f} | {per_scale} | {inception} | {accuracy} |")


def main() -> None:
    lines = ["| run | steps | `make train-ldm` wall | val/loss | classifier FID, s = 1 / 2 / 3 / 5 | "
             "Inception-64 FID | class accuracy |", "|---|---|---|---|---|---|---|"]
    lines += [row(name) for name in ("before", "after")]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
