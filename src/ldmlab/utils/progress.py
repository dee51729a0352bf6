"""Progress with an ETA where people wait (sampling, sweeps): a Rich bar on a terminal, else one
plain line on stderr at most every ``interval`` seconds and at the end (logs, CI, batch jobs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts ``total`` units (images); ``advance(n, note)`` after each chunk. ``enabled=False``
    (e.g. ranks other than 0) makes it silent. Use as a context manager."""

    def __init__(self, total: int, description: str, enabled: bool = True, stream: TextIO | None = None,
                 interval: float = 10.0) -> None:
        self.total, self.description, self.enabled = total, description, enabled and total > 0
        self.stream, self.interval = stream or sys.stderr, interval
        self.done, self.note, self._bar, self._task = 0, "", None, None
        self._started = self._shown = time.perf_counter()

    def __enter__(self) -> Progress:
        if self.enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[note]}"), console=Console(file=self.stream))
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, note="")
        return self

    def advance(self, n: int, note: str = "") -> None:
        if not self.enabled:
            return
        self.done, self.note = self.done + n, note
        if self._bar is not None:
            self._bar.update(self._task, advance=n, note=note)
            return
        now = time.perf_counter()
        if now - self._shown >= self.interval or self.done >= self.total:
            self._shown = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        """``<description>: done/total (pct), elapsed m:ss, ETA m:ss, <note>``; the ETA assumes
        the remaining units cost what the finished ones did on average."""
        elapsed = now - self._started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        text = (f"{self.description}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                f"elapsed {_clock(elapsed)}, ETA {_clock(eta) if eta == eta else '?'}")
        return f"{text}, {self.note}" if self.note else text

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
