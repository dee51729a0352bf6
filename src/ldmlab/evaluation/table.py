"""Rows of metrics (one dict per guidance scale or per group) as CSV and Markdown files."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from ldmlab.utils.atomic_output import write_file, write_text

Row = dict[str, float | int | str]


def columns(rows: Sequence[Row]) -> list[str]:
    """Every key of ``rows``, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row))


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """One line per row; a key missing from a row is an empty cell. Written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns(rows))
            writer.writeheader()
            writer.writerows(rows)

    return write_file(path, write)


def read_csv(path: Path) -> list[Row]:
    """Rows of a ``write_csv`` file: numbers as floats, empty cells left out, other text kept."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{key: _number(value) for key, value in row.items() if value != ""} for row in rows]


def format_value(value: float | int | str | None, spread: float | None = None) -> str:
    """``12.35``, ``12.35 ± 0.41`` (with a spread), ``–`` for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if not isinstance(value, float):
        return str(value)
    text = f"{value:.4g}"
    return f"{text} ± {spread:.2g}" if spread is not None and not math.isnan(spread) else text


def write_markdown(header: Sequence[str], lines: Sequence[Sequence[str]], path: Path,
                   footer: str = "", preamble: Sequence[str] = ()) -> Path:
    """The ``preamble`` lines (one paragraph each), a GitHub-flavoured Markdown table of
    preformatted cells, then ``footer`` (Markdown)."""
    text = [f"{line}\n" for line in preamble]
    text += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(cells) + " |" for cells in lines]
    write_text(path, "\n".join(text) + "\n" + footer)
    return path


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
