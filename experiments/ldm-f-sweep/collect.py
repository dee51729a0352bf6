"""Table and plot of the f-sweep from its training runs (in-run sweeps after 500 and 1000 steps).

    python experiments/ldm-f-sweep/collect.py LOG_DIR [f ...]   (LOG_DIR: the logs/ the study wrote)

Reads ``LOG_DIR/fsweep_f<f>/latest/``: ``summary.json`` (wall clock, final val loss) and
``guidance_sweep/sweep_epoch<E>.csv`` (FID / IS / KID / precision / recall of the domain
classifier, s/image of DDIM-50 sampling); writes ``experiments/ldm-f-sweep/fid_vs_steps.png``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
STEPS_PER_EPOCH = 500


def main(log_dir: Path, factors: list[int]) -> None:
    figure, axis = plt.subplots(figsize=(5.5, 4))
    print("| f | steps | FID | accuracy | IS | precision | recall | val loss | run wall s | ms / image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f in factors:
        run = log_dir / f"fsweep_f{f}" / "latest"
        summary = json.loads((run / "summary.json").read_text())
        points = []
        for table in sorted((run / "guidance_sweep").glob("sweep_epoch[0-9][0-9][0-9].csv")):
            raw = next(csv.DictReader(table.open()))
            row = {k: float(v) for k, v in raw.items() if k.endswith(("classifier", "per_image"))}
            steps = (int(table.stem.removeprefix("sweep_epoch")) + 1) * STEPS_PER_EPOCH
            points.append((steps, row["fid_classifier"]))
            print(f"| {f} | {steps} | {row['fid_classifier']:.2f} | {row['accuracy_classifier']:.3f} | "
                  f"{row['is_classifier']:.2f} | "
                  f"{row['precision_classifier']:.2f} | {row['recall_classifier']:.2f} | "
                  f"{summary['metrics']['val/loss']:.4f} | {summary['wallclock_seconds']:.0f} | "
                  f"{1000 * row['seconds_per_image']:.1f} |")
        axis.plot(*zip(*points, strict=True), marker="o", label=f"f = {f}")
    axis.set(xlabel="training steps (batch 64)", ylabel="FID (domain classifier)", title="LDM f-sweep, s = 1")
    axis.legend()
    figure.tight_layout()
    figure.savefig(HERE / "fid_vs_steps.png", dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(f) for f in sys.argv[2:]] or [1, 2, 4, 8])
