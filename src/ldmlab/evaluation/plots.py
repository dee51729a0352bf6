"""PNG plots of sweeps (matplotlib, Agg backend): metric vs s, the FID–IS frontier, and metric vs a
sampler setting (steps, η, …) with one curve per value of the other axes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from ldmlab.evaluation.columns import SPREAD, first_key, is_timing, metric_keys, varying_axes  # noqa: E402
from ldmlab.evaluation.table import Row  # noqa: E402
from ldmlab.utils.atomic_output import write_file  # noqa: E402


def frontier_keys(rows: Sequence[Row]) -> tuple[str | None, str | None]:
    """(x, y) of the frontier: the first FID key and the first IS key (else accuracy)."""
    keys = metric_keys(rows)
    return first_key(keys, "fid_"), first_key(keys, "is_") or first_key(keys, "accuracy_")


def plot_sweep(rows: Sequence[Row], path: Path, title: str = "") -> Path:
    """FID vs s, IS vs s (top axis for CFG rows: w = s − 1) and FID vs IS, for the keys ``rows`` have."""
    fid, quality = frontier_keys(rows)
    panels = [key for key in (fid, quality) if key]
    count = len(panels) + bool(fid and quality)
    fig, axes = plt.subplots(1, count, figsize=(4.5 * count, 3.8), squeeze=False)
    scales = [row["guidance_scale"] for row in rows]
    for ax, key in zip(axes[0], panels, strict=False):
        ax.errorbar(scales, [row[key] for row in rows], yerr=[row.get(key + SPREAD, 0.0) for row in rows],
                    fmt="o-", capsize=2)
        ax.set(xlabel=f"{rows[0].get('guidance', 'guidance')} scale s", ylabel=key)
        ax.ticklabel_format(useOffset=False)
        if all("w" in row for row in rows):
            ax.secondary_xaxis("top", functions=(lambda s: s - 1, lambda w: w + 1)).set_xlabel("w = s − 1")
        ax.grid(alpha=0.3)
    if fid and quality:
        draw_frontier(axes[0][-1], {"": rows}, fid, quality)
    fig.suptitle(title)
    return _save(fig, path)


def plot_grid(
    rows: Sequence[Row], x: str, path: Path, title: str = "", extra_axes: Sequence[str] = ()
) -> Path:
    """Panels FID, IS (else accuracy) and seconds per image vs the axis ``x`` (e.g.
    ``sampler.steps``), one curve per combination of the other varying axes (e.g. s or η);
    spreads over seeds as error bars. ``extra_axes``: more columns that tell curves apart (e.g. a
    report's ``p_uncond``). Log x axis for step counts."""
    fid, quality = frontier_keys(rows)
    panels = [key for key in (fid, quality, "seconds_per_image") if key and any(key in r for r in rows)]
    others = [axis for axis in varying_axes(rows, extra_axes) if axis not in (x, "w")]
    curves: dict[str, list[Row]] = {}
    for row in rows:
        curves.setdefault(", ".join(f"{_short(a)}={_text(row.get(a))}" for a in others), []).append(row)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.9), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        for label, members in curves.items():
            members = sorted((r for r in members if key in r), key=lambda r: float(r[x]))
            ax.errorbar([float(r[x]) for r in members], [r[key] for r in members],
                        yerr=[r.get(key + SPREAD, 0.0) for r in members], fmt="o-", capsize=2,
                        label=label or None)
        ax.set(xlabel=_short(x), ylabel=key + (" (lower is better)" if key == fid or is_timing(key) else ""))
        if x.endswith("steps"):
            ax.set_xscale("log")
            ax.set_xticks(sorted({float(r[x]) for r in rows}), minor=False)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        if is_timing(key):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if any(curves):
        axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def _short(axis: str) -> str:
    return {"guidance_scale": "s"}.get(axis, axis.rsplit(".", 1)[-1])


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plot_frontier(
    curves: Mapping[str, Sequence[Row]], fid: str, quality: str, path: Path, title: str = ""
) -> Path:
    """One FID–IS curve per label (e.g. ``p_uncond=0.1``), points labelled by s."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    draw_frontier(ax, curves, fid, quality)
    ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def draw_frontier(ax, curves: Mapping[str, Sequence[Row]], fid: str, quality: str) -> None:
    """x: ``fid`` (lower is better), y: ``quality``; spreads over seeds as error bars when present."""
    for label, rows in curves.items():
        xs, ys = [row[fid] for row in rows], [row[quality] for row in rows]
        xerr = [row.get(fid + SPREAD, 0.0) for row in rows]
        yerr = [row.get(quality + SPREAD, 0.0) for row in rows]
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o-", capsize=2, label=label or None)
        for x, y, row in zip(xs, ys, rows, strict=True):
            ax.annotate(f"s={row['guidance_scale']:g}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set(xlabel=f"{fid} (lower is better)", ylabel=quality, title="FID–IS frontier")
    ax.ticklabel_format(useOffset=False)
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        return write_file(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)
