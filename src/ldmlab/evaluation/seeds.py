"""Seeds as a sweep axis: per-image noise streams, and mean ± std over seeds per grid cell."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ldmlab.evaluation.columns import COUNT, SPREAD, is_axis, is_provenance, measure_keys
from ldmlab.evaluation.table import Row

IMAGE_STRIDE = 10**6
"""Images one sampling seed can name: indices lie in [0, 10⁶)."""
MAX_SEEDS = 2**32 // IMAGE_STRIDE
"""Sampling seeds lie in [0, 4294), so every image seed fits the 32 bits a CPU generator reads."""


def image_seed(seed: int, index: int) -> int:
    """Generator seed of image ``index`` under sampling seed ``seed``: ``seed·10⁶ + index``, a
    function of (seed, index) only, so the image is the same whatever the number of ranks, the
    batch size or the order of the batches. Distinct pairs never share a stream: the value stays
    below 2³², because a CPU ``torch.Generator`` (Mersenne Twister) reads only the low 32 bits of
    its seed (EDM takes its seeds mod 2³² for the same reason)."""
    if not (0 <= seed < MAX_SEEDS and 0 <= index < IMAGE_STRIDE):
        raise ValueError(f"seed={seed} must lie in [0, {MAX_SEEDS}) and index={index} in [0, {IMAGE_STRIDE})")
    return seed * IMAGE_STRIDE + index


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
