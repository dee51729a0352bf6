"""NFE vs FID per truncation T' from the ES-DDPM study's evaluate runs; prints a Markdown table.

    python experiments/es-ddpm/plot.py LOG_DIR [T' ...]   (LOG_DIR: the logs/ the study wrote)

Reads ``LOG_DIR/evaluate_es_ddpm_t<T'>/latest/guidance_sweep.csv`` and the training summaries
``LOG_DIR/es_ddpm_t<T'>/latest/summary.json``; writes ``experiments/es-ddpm/nfe_fid.png``.
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


def main(log_dir: Path, t_primes: list[int]) -> None:
    figure, axis = plt.subplots(figsize=(5.5, 4))
    print("| T' | train s | val loss | NFE | FID | IS | ms / image |\n|---|---|---|---|---|---|---|")
    for t_prime in t_primes:
        sweep = log_dir / f"evaluate_es_ddpm_t{t_prime}" / "latest" / "guidance_sweep.csv"
        rows = list(csv.DictReader(sweep.open()))
        summary = json.loads((log_dir / f"es_ddpm_t{t_prime}" / "latest" / "summary.json").read_text())
        seconds, loss = summary["wallclock_seconds"], summary["metrics"]["val/loss"]
        nfe = [int(row["sampler.steps"]) for row in rows]
        fid = [float(row["fid_classifier"]) for row in rows]
        spread = [float(row["fid_classifier_seed_std"]) for row in rows]
        axis.errorbar(nfe, fid, yerr=spread, marker="o", capsize=3, label=f"T' = {t_prime}")
        for row in rows:
            print(f"| {t_prime} | {seconds:.0f} | {loss:.4f} | "
                  f"{row['sampler.steps']} | {float(row['fid_classifier']):.2f} ± "
                  f"{float(row['fid_classifier_seed_std']):.2f} | {float(row['is_classifier']):.2f} | "
                  f"{1000 * float(row['seconds_per_image']):.1f} |")
    axis.set(xscale="log", xlabel="NFE (DDIM steps)", ylabel="FID (domain classifier)",
             title="ES-DDPM: start from the VAE sample noised to T' − 1")
    axis.legend()
    figure.tight_layout()
    figure.savefig(HERE / "nfe_fid.png", dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(t) for t in sys.argv[2:]] or [1000, 500, 300, 100])
