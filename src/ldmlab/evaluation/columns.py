"""The column vocabulary of sweep tables: which columns locate a row (axes) and which measure it.

Axes: ``guidance``, ``guidance_scale``, ``w`` (CFG's s − 1), every ``guidance.<setting>`` column
(e.g. interval guidance's ``guidance.sigma_high``), ``sampler`` and every ``sampler.<setting>``
column, the sampling ``seed``, plus any grouping key a report adds.
Provenance (``PROVENANCE``): what a score was measured on and with: the generated and reference
counts, the reference set's identity, the feature networks (layer and weights digest), the
sampler's network evaluations per image and the ldmlab version; carried with every row and cell,
never averaged, and compared before scores share a column (``ldmlab.evaluation.provenance``).
Counts: ``seeds`` (rows averaged into a cell). Timings (``*_seconds``, ``seconds_per_image``) are
measured and averaged like metrics but never pick a best row. Everything else is a metric; a
column's spread over seeds is ``<column>_seed_std``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ldmlab.evaluation.table import Row

AXES = ("guidance", "guidance_scale", "w", "sampler", "seed")
PROVENANCE = ("num_samples", "num_reference", "reference", "feature_networks", "nfe", "ldmlab_version")
SAMPLER_PREFIX = "sampler."
GUIDANCE_PREFIX = "guidance."
COUNT = "seeds"
SPREAD = "_seed_std"
LOWER_IS_BETTER = ("fid_", "kid_")


def is_axis(key: str) -> bool:
    return key in AXES or key.startswith((SAMPLER_PREFIX, GUIDANCE_PREFIX))


def is_provenance(key: str) -> bool:
    return key in PROVENANCE


def is_timing(key: str) -> bool:
    return key.endswith("_seconds") or key == "seconds_per_image"


def measure_keys(rows: Sequence[Row], extra_axes: Sequence[str] = ()) -> list[str]:
    """Metric and timing columns (first-seen order), without spreads, counts or axes."""
    keys = dict.fromkeys(key for row in rows for key in row)
    return [k for k in keys if not (is_axis(k) or is_provenance(k) or k in extra_axes or k == COUNT
                                    or k.endswith(SPREAD) or k.endswith("_std"))]


def metric_keys(rows: Sequence[Row], extra_axes: Sequence[str] = ()) -> list[str]:
    """Metric columns (FID, KID, IS, accuracy, …): measures other than timings."""
    return [k for k in measure_keys(rows, extra_axes) if not is_timing(k)]


def first_key(keys: Sequence[str], prefix: str) -> str | None:
    return next((k for k in keys if k.startswith(prefix)), None)


def varying_axes(rows: Sequence[Row], extra_axes: Sequence[str] = ()) -> list[str]:
    """Axis columns (and ``extra_axes``) that take more than one value across ``rows``."""
    keys = [k for k in dict.fromkeys(key for row in rows for key in row) if is_axis(k) or k in extra_axes]
    return [k for k in keys if len({str(row.get(k)) for row in rows}) > 1]


def table_problem(rows: object) -> str | None:
    """Why ``rows`` (from a file) are not a sweep table, or None: a non-empty list of mappings,
    each with a numeric ``guidance_scale``, single values on the axes and provenance columns and
    numbers elsewhere."""
    if not isinstance(rows, list) or not rows:
        return "has no rows" if isinstance(rows, list) else f"rows are a {type(rows).__name__}, not a list"
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {index} is a {type(row).__name__}, not a mapping"
        if not _is_number(row.get("guidance_scale")):
            return f"row {index} has no numeric guidance_scale column"
        for key, value in row.items():
            if (is_axis(key) or is_provenance(key)) and not isinstance(value, str | int | float | None):
                return f"row {index}: {key} is a {type(value).__name__}, not one value"
            if not (is_axis(key) or is_provenance(key)) and not _is_number(value):
                return f"row {index}: {key} is {str(value)[:40]!r}, not a number"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
