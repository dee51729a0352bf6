"""One table and one FID–IS frontier over several ``make evaluate`` runs, e.g. CFG on a conditional
LDM next to classifier guidance on an unconditional one, scored by the same evaluator.

Each run is a ``logs/evaluate/runs/<ts>`` dir (or its ``summary.json``); its curve is labelled
``<guidance> · <checkpoint's run name>`` unless ``labels`` are given. The runs' rows must share
their provenance (``ldmlab.evaluation.provenance``), stated above the table, unless
``allow_mixed_provenance``; a row without it takes its run's summary-level ``num_samples``,
``num_reference`` and ``reference`` where the summary has them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ldmlab.evaluation.aggregate import TABLE_METRICS
from ldmlab.evaluation.columns import (
    PROVENANCE,
    SAMPLER_PREFIX,
    SPREAD,
    measure_keys,
    table_problem,
    varying_axes,
)
from ldmlab.evaluation.plots import frontier_keys, plot_frontier
from ldmlab.evaluation.provenance import differing, provenance_lines, value_text
from ldmlab.evaluation.table import Row, format_value, write_csv, write_markdown
from ldmlab.utils.errors import ConfigError

KEY = "evaluate_runs"


def load_evaluation(run: Path) -> tuple[str, list[Row]]:
    """(default label, rows) of one evaluate run; anything but an evaluate run's summary.json
    (unreadable, not JSON, another task's, rows that are not a sweep table) is refused."""
    summary_path = run / "summary.json" if run.is_dir() else run
    try:
        if not summary_path.is_file():  # a FIFO or /dev/zero would never end
            raise FileNotFoundError(summary_path)
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        summary, problem = None, f"is not readable JSON ({type(err).__name__})"
    else:
        problem = _summary_problem(summary)
    if problem:
        raise ConfigError(KEY, f"{run} is not a `make evaluate` run: {summary_path} {problem}",
                          "give logs/evaluate/runs/<timestamp> dirs")
    guidance = (summary.get("guidance") or {}).get("name", "cfg")
    checkpoint = Path(summary["checkpoint"])
    model = checkpoint.parents[1].name if len(checkpoint.parents) > 1 else checkpoint.stem
    recorded = {key: summary[key] for key in PROVENANCE if isinstance(summary.get(key), str | int | float)}
    return f"{guidance} · {model}", [{**recorded, **row} for row in summary["rows"]]


def _summary_problem(summary: object) -> str | None:
    if not isinstance(summary, dict):
        return f"holds a {type(summary).__name__}, not a mapping"
    if summary.get("task") != "evaluate":
        return f"is the summary of task {str(summary.get('task'))[:40]!r}, not evaluate"
    if not isinstance(summary.get("checkpoint"), str):
        return "has no checkpoint path"
    guidance = summary.get("guidance") or {}
    if not isinstance(guidance, dict) or not isinstance(guidance.get("name", "cfg"), str):
        return "has a guidance entry without a name"
    problem = table_problem(summary.get("rows"))
    return f"rows: {problem}" if problem else None


def write_comparison(
    runs: Sequence[Path], out_dir: Path, labels: Sequence[str] | None = None,
    allow_mixed_provenance: bool = False,
) -> dict[str, Path]:
    """``compare.csv``, ``compare.md`` and ``frontier.png`` in ``out_dir`` (one curve per run, and
    per differing provenance when ``allow_mixed_provenance`` lets it differ)."""
    if not runs:
        raise ConfigError(KEY, "is empty", "e.g. evaluate_runs=[logs/evaluate/runs/A,logs/evaluate/runs/B]")
    if labels and len(labels) != len(runs):
        raise ConfigError("labels", f"has {len(labels)} entries for {len(runs)} runs",
                          "give one label per run")
    curves = {}
    for index, run in enumerate(runs):
        label, rows = load_evaluation(Path(run))
        curves[labels[index] if labels else label] = rows
    if len(curves) != len(runs):
        raise ConfigError("labels", f"two runs share a label ({sorted(curves)})", "give labels=[...]")
    rows = [{"run": label, **row} for label, curve in curves.items() for row in curve]
    preamble = provenance_lines(rows, allow_mixed_provenance, "the comparison")
    mixed = list(differing(rows))
    metrics = [k for prefix in TABLE_METRICS for k in measure_keys(rows, ["run"]) if k.startswith(prefix)]
    settings = [a for a in varying_axes(rows) if a == "sampler" or a.startswith(SAMPLER_PREFIX)]
    header = ["run", "guidance", *(a.removeprefix(SAMPLER_PREFIX) for a in settings), *mixed, "s", "seeds",
              *metrics]
    lines = [[row["run"], str(row.get("guidance", "cfg")), *(format_value(row.get(a)) for a in settings),
              *(value_text(row.get(k)) for k in mixed), f"{row['guidance_scale']:g}",
              format_value(row.get("seeds", 1)),
              *(format_value(row.get(m), row.get(m + SPREAD)) for m in metrics)] for row in rows]
    paths = {"csv": write_csv(rows, out_dir / "compare.csv"),
             "markdown": write_markdown(header, lines, out_dir / "compare.md", preamble=preamble)}
    fid, quality = frontier_keys(rows)
    if fid and quality:
        if mixed:  # one curve per run and provenance
            curves = {}
            for row in rows:
                label = ", ".join([row["run"], *(f"{k}={value_text(row.get(k))}" for k in mixed)])
                curves.setdefault(label, []).append(row)
        paths["frontier"] = plot_frontier(curves, fid, quality, out_dir / "frontier.png",
                                          title=f"{fid} vs {quality} over the guidance scale")
    return paths
