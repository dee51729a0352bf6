"""Seeds as a sweep axis: per-seed noise streams, and mean ± std over seeds per grid cell."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ldmlab.evaluation.columns import COUNT, SPREAD, is_axis, is_provenance, measure_keys
from ldmlab.evaluation.table import Row

SEED_STRIDE = 1_000_000


def chunk_seed(seed: int, index: int) -> int:
    """Generator seed of chunk ``index`` under sampling seed ``seed``: ``seed·10⁶ + index``, so
    seeds never share a chunk's noise (seed 0 keeps the historical ``index``)."""
    return seed * SEED_STRIDE + index


def mean_over_seeds(rows: Sequence[Row], seed_keys: Sequence[str] = ("seed",),
                    extra_axes: Sequence[str] = ()) -> list[Row]:
    """One row per cell, in first-seen order. A cell is every row sharing all axis and provenance
    columns (and ``extra_axes``) except ``seed_keys``; it holds those, ``seeds`` = number of rows
    averaged, each measure's mean and, over ≥ 2 rows, its sample standard deviation ``<measure>_seed_std``
    (n − 1 denominator). Rows missing a measure are left out of that measure's mean."""
    cells: dict[tuple, list[Row]] = {}
    for row in rows:
        axes = tuple((k, row[k]) for k in row
                     if (is_axis(k) or is_provenance(k) or k in extra_axes) and k not in seed_keys)
        cells.setdefault(axes, []).append(row)
    out = []
    for axes, members in cells.items():
        cell: Row = {**dict(axes), COUNT: len(members)}
        for key in measure_keys(members, (*extra_axes, *seed_keys)):
            values = [float(m[key]) for m in members if key in m]
            cell[key] = statistics.fmean(values)
            if len(values) > 1:
                cell[key + SPREAD] = statistics.stdev(values)
        out.append(cell)
    return out
