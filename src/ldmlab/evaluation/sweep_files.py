"""The files of one sweep: the per-grid-point table (mean ± std over seeds), the per-seed rows, a plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ldmlab.evaluation.columns import GUIDANCE_PREFIX, SAMPLER_PREFIX, varying_axes
from ldmlab.evaluation.plots import plot_grid, plot_sweep
from ldmlab.evaluation.seeds import mean_over_seeds
from ldmlab.evaluation.table import Row, write_csv


def plot_axis(cells: Sequence[Row]) -> str:
    """The x axis of a sweep's plot: the first varying numeric sampler setting (steps before the
    others), else the guidance scale if it varies, else the first varying numeric guidance
    setting (e.g. ``guidance.sigma_high``), else the guidance scale."""
    varying = varying_axes(cells)
    numeric = [a for a in varying if all(isinstance(c.get(a), int | float) for c in cells)]
    settings = sorted((a for a in numeric if a.startswith(SAMPLER_PREFIX)),
                      key=lambda a: a != f"{SAMPLER_PREFIX}steps")
    if not settings and "guidance_scale" not in varying:
        settings = [a for a in numeric if a.startswith(GUIDANCE_PREFIX)]
    return settings[0] if settings else "guidance_scale"


def write_sweep(rows: Sequence[Row], stem: Path, title: str) -> tuple[list[Row], dict[str, Path]]:
    """(cells, files): ``<stem>.csv`` with one row per grid point (``seeds`` = rows averaged, and
    ``<metric>_seed_std`` over ≥ 2 seeds), ``<stem>_per_seed.csv`` with every row when there are
    several seeds, and ``<stem>.png``: metric vs s and the FID–IS frontier when only the scale
    varies, else metric vs the swept sampler or guidance setting (``plot_axis``) with a curve per
    value of the other axes."""
    cells = mean_over_seeds(rows)
    files = {"csv": write_csv(cells, stem.with_suffix(".csv"))}
    if len(cells) < len(rows):
        files["per_seed_csv"] = write_csv(rows, stem.with_name(stem.name + "_per_seed.csv"))
    x = plot_axis(cells)
    if set(varying_axes(cells)) <= {"guidance_scale", "w"}:
        files["plot"] = plot_sweep(cells, stem.with_suffix(".png"), title)
    else:
        files["plot"] = plot_grid(cells, x, stem.with_suffix(".png"), title)
    return cells, files
