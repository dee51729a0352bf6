"""Aggregate the UNet-vs-DiT study of run.sh: results.md (tables, mean ± sample std over training
seeds) and frontier.png (classifier FID, Inception FID, classifier accuracy and recall vs guidance
scale, one line per model with a ±std band).

Reads ``<log>/dvu_<model>_s<seed>/latest/summary.json`` (parameters, forward FLOPs/img, img/s,
val/loss, steps, wall time) and ``<log>/dvu_eval_<model>_s<seed>/latest/guidance_sweep.csv``.
Training FLOPs = 3 × forward FLOPs × 64 images × steps (the throughput callback's convention).

    .venv/bin/python experiments/dit-vs-unet/aggregate.py --log /work/study/logs
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MODELS = {"unet": "UNet (small)", "dit_p2": "DiT/2 (T)", "dit_p1": "DiT/1 (T)",
          "unet_vec": "UNet, labels in t-emb (control)"}
METRICS = {"fid_classifier": "FID (domain classifier)", "fid_inception": "FID (Inception 64-d)",
           "accuracy_classifier": "classifier accuracy", "recall_classifier": "recall (domain classifier)"}
SPI = "seconds_per_image"  # sampling, DPM-Solver++ 20 (CFG doubles the batch for s ≠ 1)
KEYS = (*METRICS, SPI)
BATCH = 64


def mean_std(values: list[float], digits: int = 2) -> str:
    """'m ± s' (sample std, n ≥ 2) or 'm' for one value; '—' for none."""
    if not values:
        return "—"
    m = float(np.mean(values))
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


def load(log: Path) -> dict[str, dict[int, dict]]:
    """{model: {seed: {"train": summary, "eval": {scale: row}}}} for every finished train run."""
    runs: dict[str, dict[int, dict]] = {}
    for model in MODELS:
        for task in sorted(log.glob(f"dvu_{model}_s*")):
            seed = int(task.name.rsplit("_s", 1)[1])
            summary = task / "latest" / "summary.json"
            if not summary.is_file():
                continue
            run = {"train": json.loads(summary.read_text()), "eval": {}}
            sweep = log / f"dvu_eval_{model}_s{seed}" / "latest" / "guidance_sweep.csv"
            if sweep.is_file():
                with sweep.open() as f:
                    rows = list(csv.DictReader(f))
                run["eval"] = {float(r["guidance_scale"]): {k: float(r[k]) for k in KEYS if r.get(k)}
                               for r in rows}
            runs.setdefault(model, {})[seed] = run
    return runs


def training_table(runs: dict[str, dict[int, dict]]) -> list[str]:
    lines = ["| model | seeds | params | fwd MFLOPs/img | train steps | train TFLOPs | img/s (train) "
             "| run wall s | val/loss | sampling ms/img (s = 3) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, seeds in runs.items():
        s = [r["train"] for r in seeds.values()]
        d = s[0]["denoiser"]
        steps = s[0]["global_step"]
        tflops = 3 * d["forward_flops_per_image"] * BATCH * steps / 1e12
        lines.append(
            f"| {MODELS[model]} | {len(s)} | {d['parameters'] / 1e6:.2f}M "
            f"| {d['forward_flops_per_image'] / 1e6:.1f} "
            f"| {steps} | {tflops:.2f} | {mean_std([x['denoiser']['img_per_s'] for x in s], 1)} "
            f"| {mean_std([x['wallclock_seconds'] for x in s], 0)} "
            f"| {mean_std([x['metrics']['val/loss'] for x in s], 4)} "
            f"| {mean_std([1e3 * v for v in per_scale(runs, model, SPI).get(3.0, [])], 1)} |")
    return lines


def per_scale(runs: dict[str, dict[int, dict]], model: str, metric: str) -> dict[float, list[float]]:
    """{scale: [value per seed]} over the seeds with an evaluation."""
    out: dict[float, list[float]] = {}
    for run in runs[model].values():
        for scale, row in run["eval"].items():
            if metric in row:
                out.setdefault(scale, []).append(row[metric])
    return dict(sorted(out.items()))


def sweep_table(runs: dict[str, dict[int, dict]]) -> list[str]:
    scales = sorted({s for seeds in runs.values() for r in seeds.values() for s in r["eval"]})
    lines = []
    for metric, title in METRICS.items():
        digits = 2 if metric == "fid_classifier" else 3
        lines += [f"**{title}** (mean ± std over training seeds; n = seeds evaluated)", "",
                  "| model | n | " + " | ".join(f"s = {s:g}" for s in scales) + " |",
                  "|---|---|" + "---|" * len(scales)]
        for model in runs:
            values = per_scale(runs, model, metric)
            n = max((len(v) for v in values.values()), default=0)
            lines.append(f"| {MODELS[model]} | {n} | "
                         + " | ".join(mean_std(values.get(s, []), digits) for s in scales) + " |")
        lines.append("")
    return lines


def best_fid_per_seed(runs: dict[str, dict[int, dict]]) -> list[str]:
    """Each run's best classifier FID over s (and the s), per seed: the paired view."""
    seeds = sorted({s for v in runs.values() for s in v})
    lines = ["| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
             "|---|" + "---|" * (len(seeds) + 1)]
    for model, by_seed in runs.items():
        cells, bests = [], []
        for seed in seeds:
            ev = by_seed.get(seed, {}).get("eval", {})
            if not ev:
                cells.append("—")
                continue
            scale, row = min(ev.items(), key=lambda kv: kv[1]["fid_classifier"])
            bests.append(row["fid_classifier"])
            cells.append(f"{row['fid_classifier']:.2f} (s = {scale:g})")
        lines.append(f"| {MODELS[model]} | " + " | ".join(cells) + f" | {mean_std(bests)} |")
    return lines


def paired_table(runs: dict[str, dict[int, dict]], reference: str = "unet") -> list[str]:
    """Per seed, model − ``reference`` at each s (same training seed, same sampling seed)."""
    scales = sorted({s for r in runs.get(reference, {}).values() for s in r["eval"]})
    lines = ["| model − UNet | metric | " + " | ".join(f"s = {s:g}" for s in scales) + " |",
             "|---|---|" + "---|" * len(scales)]
    for model in (m for m in runs if m != reference):
        seeds = [s for s in runs[model] if runs[model][s]["eval"] and runs[reference].get(s, {}).get("eval")]
        for metric in ("fid_classifier", "fid_inception", "accuracy_classifier"):
            digits = 2 if metric == "fid_classifier" else 3
            ev, ref = ({k: r[k]["eval"] for k in seeds} for r in (runs[model], runs[reference]))
            cells = [" / ".join(f"{ev[k][s][metric] - ref[k][s][metric]:+.{digits}f}" for k in seeds)
                     for s in scales]
            lines.append(f"| {MODELS[model]} | {metric} | " + " | ".join(cells) + " |")
    return lines


def plot(runs: dict[str, dict[int, dict]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.5 * len(METRICS), 4))
    for ax, (metric, title) in zip(axes, METRICS.items(), strict=True):
        for model in runs:
            values = per_scale(runs, model, metric)
            if not values:
                continue
            s = np.array(list(values))
            m = np.array([np.mean(v) for v in values.values()])
            sd = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values.values()])
            n = max(len(v) for v in values.values())
            ax.plot(s, m, marker="o", label=f"{MODELS[model]} (n = {n})")
            ax.fill_between(s, m - sd, m + sd, alpha=0.2)
        ax.set_xlabel("guidance scale s")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("UNet vs DiT at matched training FLOPs (Fashion-MNIST, f = 4 latents; ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=Path("logs"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    runs = load(args.log)
    text = ["# UNet vs DiT at matched training FLOPs: results", "",
            "Generated by `aggregate.py`; setup and conclusions in README.md.", "",
            "## Training", "", *training_table(runs), "",
            "## Guidance sweep (300 DPM-Solver++ 20 samples per scale, 1000 test references)", "",
            *sweep_table(runs),
            "## Best classifier FID over s, per training seed", "", *best_fid_per_seed(runs), "",
            "## Paired by training seed: model − UNet (seeds in order)", "", *paired_table(runs), ""]
    (args.out / "results.md").write_text("\n".join(text))
    plot(runs, args.out / "frontier.png")
    print("\n".join(text))


if __name__ == "__main__":
    main()
