"""Progress lines where people wait: counts, percentages, ETA, throttling, silence off rank 0."""

from __future__ import annotations

import io

from ldmlab.utils.progress import Progress


def test_plain_lines_count_images_and_estimate_the_rest():
    stream = io.StringIO()
    with Progress(40, "sweep (images)", stream=stream, interval=0.0) as progress:
        progress._started -= 30.0  # 10 images took 30 s → 30 more take 90 s
        progress.advance(10, "s=3, steps=50")
        lines = stream.getvalue().splitlines()
        assert lines == ["sweep (images): 10/40 (25%), elapsed 0:30, ETA 1:30, s=3, steps=50"]
        progress.advance(30)
    assert stream.getvalue().splitlines()[-1].startswith("sweep (images): 40/40 (100%)")


def test_lines_are_throttled_but_the_last_one_always_shows():
    stream = io.StringIO()
    with Progress(30, "sampling", stream=stream, interval=3600.0) as progress:
        for _ in range(3):
            progress.advance(10)
    assert [line.split(":")[1].split("(")[0].strip() for line in stream.getvalue().splitlines()] == ["30/30"]


def test_disabled_progress_is_silent():
    stream = io.StringIO()
    with Progress(10, "sweep", enabled=False, stream=stream, interval=0.0) as progress:
        progress.advance(10)
    assert stream.getvalue() == ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_rich_bar():
    stream = Terminal()
    with Progress(40, "sweep (images)", stream=stream) as progress:
        assert progress._bar is not None
        progress.advance(40, "s=3")
    assert "40/40" in stream.getvalue() and "s=3" in stream.getvalue()
