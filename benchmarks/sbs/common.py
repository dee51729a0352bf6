"""One benchmark row: time ours and theirs interleaved, probe memory, hold the result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sbs.timing import interleaved, peak_memory_mb


@dataclass
class Settings:
    """What every case shares: device, dtype, threads, repeats, and whether this is a smoke run."""

    device: str
    dtype: str
    threads: int
    repeats: int
    warmup: int
    quick: bool


@dataclass
class Row:
    case: str
    what: str
    batch: int
    ours_s: float
    theirs_s: float
    ours_params: int
    theirs_params: int
    ours_mem_mb: float
    theirs_mem_mb: float
    target: float | None
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.theirs_s / self.ours_s

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "PASS" if self.ratio >= self.target else "MISS"


def compare(
    case: str, what: str, batch: int, ours: Callable[[], object], theirs: Callable[[], object],
    params: tuple[int, int], target: float | None, s: Settings, **extra,
) -> Row:
    """Interleaved median times (after warm-up), then one memory probe of each."""
    times = interleaved({"ours": ours, "theirs": theirs}, s.repeats, s.warmup, s.device)
    mem_ours, mem_theirs = peak_memory_mb(ours, s.device), peak_memory_mb(theirs, s.device)
    return Row(case, what, batch, times["ours"], times["theirs"], *params, mem_ours, mem_theirs, target,
               extra)
