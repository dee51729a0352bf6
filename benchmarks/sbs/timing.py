"""Timing for every suite: interleaved medians (ours/theirs alternate, warm-up first), mean / median /
single-call seconds, and peak-memory probes."""

from __future__ import annotations

import contextlib
import ctypes
import statistics
import threading
import time
from collections.abc import Callable

import torch

PAGE = 4096


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int, device: str
) -> dict[str, float]:
    """Median seconds per call of each fn; the order alternates every round (A B, B A, ...) so
    background load and thermal drift hit every entry alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _trim() -> None:
    """Hand freed heap back to the OS so the RSS baseline is honest (glibc only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory_mb(fn: Callable[[], object], device: str) -> float:
    """Peak extra memory of one call in MiB. CUDA: ``max_memory_allocated`` over the allocated
    baseline. CPU: peak RSS (sampled every 0.5 ms by a thread) over the RSS after ``malloc_trim``."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    _trim()
    base = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return (max(peak, _rss_bytes()) - base) / 2**20


def autocast(device: str, dtype: str):
    """bf16 autocast (weights stay float32, as Lightning's bf16-mixed) or a no-op for fp32."""
    if dtype == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seconds(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def mean_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Mean seconds per call over ``repeats`` calls after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` timed calls after one warm-up call."""
    fn()
    return statistics.median(seconds(fn) for _ in range(repeats))
