"""Whether the scores of a report may share a table column and a frontier: their provenance
(``columns.PROVENANCE``) compared across its rows, and the lines that state it above the table.

FID and its kin depend on the sample and reference counts, the reference set and the feature
network, so rows that differ in ``num_samples``, ``num_reference``, ``reference``,
``feature_networks`` or ``ldmlab_version`` are refused together unless ``allow_mixed_provenance``
(then noted, and the differing columns shown per row). ``nfe`` is stated but not compared: it
varies along a sampler axis. A row without a provenance column (written before rows carried it)
counts as ``unknown`` for it, which differs from any recorded value.
"""

from __future__ import annotations

from collections.abc import Sequence

from ldmlab.evaluation.columns import PROVENANCE
from ldmlab.evaluation.table import Row
from ldmlab.utils.errors import ConfigError

KEY = "allow_mixed_provenance"
UNKNOWN = "unknown"
COMPARED = tuple(key for key in PROVENANCE if key != "nfe")


def value_text(value: object) -> str:
    """A provenance value as text: ``unknown`` for None, whole floats (from a CSV) as integers."""
    if value is None:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def values(rows: Sequence[Row], key: str) -> list[str]:
    """The distinct texts of ``key`` across ``rows``, first seen first."""
    return list(dict.fromkeys(value_text(row.get(key)) for row in rows))


def differing(rows: Sequence[Row]) -> dict[str, list[str]]:
    """{compared provenance key: its distinct values} for the keys that take more than one."""
    return {key: found for key in COMPARED if len(found := values(rows, key)) > 1}


def provenance_lines(rows: Sequence[Row], allow_mixed: bool, what: str) -> list[str]:
    """The lines to print above the table of ``rows``: what the scores were measured on and, when
    ``allow_mixed`` lets differing provenance share it, a note of what differs. Refused (``KEY``)
    when the compared provenance differs and ``allow_mixed`` is false; ``what`` names the table."""
    mixed = differing(rows)
    listed = "; ".join(f"{key} {' vs '.join(found)}" for key, found in mixed.items())
    if mixed and not allow_mixed:
        raise ConfigError(KEY, f"{what} would put scores of different provenance in one column: {listed}",
                          f"{KEY}=true to report them together (the table notes it), or compare scores "
                          "measured alike")
    lines = [describe(rows)]
    if mixed:
        lines.append(f"Mixed provenance ({KEY}=true): {listed}; each row's is in its columns.")
    return lines


def describe(rows: Sequence[Row]) -> str:
    """``N = 300 samples vs 1000 references (<reference>), features <networks>; NFE 50; ldmlab 0.1.0``;
    a key taking several values lists them (``300 | 1000``)."""
    text = {key: " | ".join(values(rows, key)) for key in PROVENANCE}
    return (f"N = {text['num_samples']} samples vs {text['num_reference']} references ({text['reference']}), "
            f"features {text['feature_networks']}; NFE {text['nfe']}; ldmlab {text['ldmlab_version']}")
