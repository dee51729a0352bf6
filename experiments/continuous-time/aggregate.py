"""Aggregate the continuous-time study (train.sh, evaluate.sh): results.md (tables, mean ± sample std
over training seeds) and nfe.png (study 1: FID vs NFE per objective and sampler), frontier.png
(study 2: FID vs classifier accuracy and recall per guidance method across its scales).

Reads ``<log>/ct_<model>_s<seed>/latest/summary.json`` (val/loss, wall time) and the
``guidance_sweep.csv`` of every evaluation ``<log>/cte_<model>_<sampler>_s<seed>`` (study 1) and
``<log>/ctg_<method>_s<seed>`` (study 2). NFE (network evaluations per sample): steps for
DPM-Solver++ and Euler, 2·steps − 1 for EDM's Heun (no correction on the last step).

    .venv/bin/python experiments/continuous-time/aggregate.py --log /work/study/logs
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

OBJECTIVES = {"eps": "ε-prediction (DDPM)", "v": "v-prediction", "flow": "flow matching", "edm": "EDM"}
SAMPLERS = {"dpmpp": "DPM-Solver++(2M)", "euler": "Euler", "edm": "EDM Heun"}
METHODS = {
    "cfg": "CFG",
    "interval": "CFG in σ̃ ∈ (0.56, 10.84]",
    "auto": "autoguidance (250-step guide)",
    "classifier": "classifier guidance",
}
FIDS = ("fid_classifier", "fid_inception")
KEYS = (*FIDS, "accuracy_classifier", "recall_classifier", "precision_classifier", "seconds_per_image")


def nfe(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler == "edm" else steps


def mean_std(values: list[float], digits: int = 2) -> str:
    """'m ± s' (sample std, n ≥ 2) or 'm' for one value; '—' for none."""
    if not values:
        return "—"
    m = float(np.mean(values))
    return (
        f"{m:.{digits}f}"
        if len(values) < 2
        else f"{m:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"
    )


def rows_of(task: Path) -> list[dict]:
    """The newest evaluation's sweep rows of ``task`` ([] when it has not finished)."""
    sweeps = sorted(task.glob("runs/*/guidance_sweep.csv"))
    if not sweeps:
        return []
    with sweeps[-1].open() as f:
        return [
            {
                k: (float(v) if k in KEYS or k in ("guidance_scale", "sampler.steps") else v)
                for k, v in r.items()
            }
            for r in csv.DictReader(f)
        ]


def study1(log: Path) -> dict[tuple[str, str], dict[int, dict[str, list[float]]]]:
    """{(objective, sampler): {nfe: {metric: [value per seed]}}}."""
    out: dict = {}
    for model in OBJECTIVES:
        for sampler in SAMPLERS:
            for task in sorted(log.glob(f"cte_{model}_{sampler}_s*")):
                for row in rows_of(task):
                    cell = out.setdefault((model, sampler), {}).setdefault(
                        nfe(sampler, int(row["sampler.steps"])), {k: [] for k in KEYS}
                    )
                    for k in KEYS:
                        cell[k].append(row[k])
    return out


def study2(log: Path) -> dict[str, dict[float, dict[str, list[float]]]]:
    """{method: {scale: {metric: [value per seed]}}}; s = 1 of CFG is every method's start."""
    out: dict = {}
    for method in METHODS:
        for task in sorted(log.glob(f"ctg_{method}_s*")):
            for row in rows_of(task):
                cell = out.setdefault(method, {}).setdefault(row["guidance_scale"], {k: [] for k in KEYS})
                for k in KEYS:
                    cell[k].append(row[k])
    return out


def training(log: Path) -> list[str]:
    lines = ["| model | seeds | val/loss (own target) | wall s |", "|---|---|---|---|"]
    for model in (*OBJECTIVES, "eps_weak"):
        runs = [json.loads(p.read_text()) for p in sorted(log.glob(f"ct_{model}_s*/latest/summary.json"))]
        runs = [r for r in runs if r.get("status") == "completed"]
        if runs:
            loss = [r["metrics"]["val/loss"] for r in runs]
            wall = [r["wallclock_seconds"] for r in runs]
            lines.append(f"| {model} | {len(runs)} | {mean_std(loss, 4)} | {mean_std(wall, 0)} |")
    return lines


def table1(data: dict, metric: str) -> list[str]:
    nfes = sorted({n for cells in data.values() for n in cells})
    lines = [
        f"| objective | sampler | {' | '.join(f'NFE {n}' for n in nfes)} |",
        "|---|---|" + "---|" * len(nfes),
    ]
    for (model, sampler), cells in data.items():
        values = [mean_std(cells[n][metric]) if n in cells else "—" for n in nfes]
        lines.append(f"| {OBJECTIVES[model]} | {SAMPLERS[sampler]} | {' | '.join(values)} |")
    return lines


def best1(data: dict, metric: str) -> list[str]:
    """Each objective's best sampler per NFE bucket (5, ~10, ~20, ~50: EDM's 9/19/49 count as 10/20/50)."""
    buckets = {5: 5, 9: 10, 10: 10, 19: 20, 20: 20, 49: 50, 50: 50}
    lines = [f"| objective | {' | '.join(f'NFE ≈ {b}' for b in (5, 10, 20, 50))} |", "|---|" + "---|" * 4]
    for model in OBJECTIVES:
        cells = []
        for bucket in (5, 10, 20, 50):
            options = [
                (float(np.mean(c[metric])), c[metric], s, n)
                for (m, s), per in data.items()
                if m == model
                for n, c in per.items()
                if buckets.get(n) == bucket and c[metric]
            ]
            if not options:
                cells.append("—")
                continue
            _, values, sampler, n = min(options)
            cells.append(f"{mean_std(values)} ({SAMPLERS[sampler]}, {n})")
        lines.append(f"| {OBJECTIVES[model]} | {' | '.join(cells)} |")
    return lines


def table2(data: dict) -> list[str]:
    lines = [
        "| method | s | FID (classifier) | FID (Inception) | accuracy | recall | precision | s/img |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, cells in data.items():
        for scale, c in sorted(cells.items()):
            lines.append(
                f"| {METHODS[method]} | {scale:g} | {mean_std(c['fid_classifier'])} | "
                f"{mean_std(c['fid_inception'])} | {mean_std(c['accuracy_classifier'], 3)} | "
                f"{mean_std(c['recall_classifier'], 3)} | {mean_std(c['precision_classifier'], 3)} | "
                f"{mean_std(c['seconds_per_image'], 3)} |"
            )
    return lines


def paired2(log: Path) -> list[str]:
    """Each method's FID (classifier) minus CFG's at the same s, paired by training seed."""
    per_seed: dict = {}
    for method in METHODS:
        for task in sorted(p for p in log.glob(f"ctg_{method}_s*") if p.is_dir()):
            seed = int(task.name.rsplit("_s", 1)[1])
            for row in rows_of(task):
                per_seed.setdefault(method, {}).setdefault(row["guidance_scale"], {})[seed] = row[
                    "fid_classifier"
                ]
    lines = ["| method − CFG (same s, same seed) | s | Δ FID (classifier) | seeds |", "|---|---|---|---|"]
    for method, cells in per_seed.items():
        if method == "cfg":
            continue
        for scale, by_seed in sorted(cells.items()):
            base = per_seed.get("cfg", {}).get(scale, {})
            diffs = [value - base[seed] for seed, value in sorted(by_seed.items()) if seed in base]
            if diffs:
                lines.append(f"| {METHODS[method]} | {scale:g} | {mean_std(diffs)} | {len(diffs)} |")
    return lines


def plot1(data: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, FIDS, strict=True):
        for (model, sampler), cells in data.items():
            n = sorted(cells)
            m = [np.mean(cells[k][metric]) for k in n]
            s = [np.std(cells[k][metric], ddof=1) if len(cells[k][metric]) > 1 else 0 for k in n]
            ax.errorbar(
                n,
                m,
                yerr=s,
                marker="o",
                capsize=3,
                label=f"{OBJECTIVES[model]}, {SAMPLERS[sampler]}",
                linestyle="-" if sampler != "dpmpp" else "--",
            )
        ax.set(
            xscale="log", xlabel="NFE", ylabel=metric, title=f"{metric} vs NFE (s = 1, mean ± std, 3 seeds)"
        )
        ax.set_xticks([5, 10, 20, 50], labels=["5", "10", "20", "50"])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot2(data: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    start = data.get("cfg", {}).get(1.0)
    for ax, x in zip(axes, ("accuracy_classifier", "recall_classifier"), strict=True):
        for method, cells in data.items():
            points = ([(1.0, start)] if start and method != "cfg" else []) + sorted(cells.items())
            xs = [np.mean(c[x]) for _, c in points]
            ys = [np.mean(c["fid_classifier"]) for _, c in points]
            ax.plot(xs, ys, marker="o", label=METHODS[method])
            for (scale, _), px, py in zip(points, xs, ys, strict=True):
                ax.annotate(f"{scale:g}", (px, py), fontsize=7)
        ax.set(
            xlabel=x, ylabel="fid_classifier", title=f"FID vs {x.split('_')[0]} (labels: s; mean of 3 seeds)"
        )
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    one, two = study1(args.log), study2(args.log)
    lines = ["# Continuous-time study: measured tables", "", "## Training", "", *training(args.log), ""]
    for metric in FIDS:
        lines += [
            f"## Study 1: {metric} vs NFE (s = 1)",
            "",
            *table1(one, metric),
            "",
            f"Best sampler per objective ({metric}; EDM Heun's NFE 9/19/49 in the 10/20/50 columns):",
            "",
            *best1(one, metric),
            "",
        ]
    lines += ["## Study 2: guidance frontier (ε model, DPM-Solver++ 20 steps)", "", *table2(two), ""]
    lines += ["Paired by training seed:", "", *paired2(args.log), ""]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    if one:
        plot1(one, args.out / "nfe.png")
    if two:
        plot2(two, args.out / "frontier.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
