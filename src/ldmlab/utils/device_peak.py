"""The peak FLOP/s that MFU divides by, and where it came from.

CUDA: ldmlab's datasheet table (``ldmlab.utils.peak_flops``), else Lightning's
``get_available_flops``. CPU: measured once per process per (dtype, threads), the best rate of
square matmuls in the compute dtype on the process's threads (sizes 512, 1024, 2048, stopping once
a call takes 20 ms or the next size would overrun 0.25 s). Anything else: Lightning's table (XLA)
or unknown.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import torch
from lightning_fabric.utilities.throughput import get_available_flops

from ldmlab.utils.peak_flops import gpu_row, table_flops

TABLE, LIGHTNING, MEASURED = "table", "lightning", "measured"
_SIZES, _REPEATS, _LARGE_S, _BUDGET_S = (512, 1024, 2048), 3, 0.02, 0.25


class DevicePeak(NamedTuple):
    """Peak FLOP/s of one device (None: unknown), its source (table / lightning / measured) and
    what was looked up or measured."""

    flops: float | None
    source: str | None
    device: str


def device_peak(device: torch.device, dtype: torch.dtype) -> DevicePeak:
    """The peak for ``dtype`` matmuls on ``device``, as the module docstring orders the sources."""
    if device.type == "cpu":
        threads = torch.get_num_threads()
        measured = dtype if dtype.is_floating_point else torch.float32
        return DevicePeak(measured_cpu_flops(measured, threads), MEASURED,
                          f"cpu ({threads} threads, {str(measured).removeprefix('torch.')} matmul)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    if device.type == "cuda" and gpu_row(name):
        tf32 = (torch.get_float32_matmul_precision() != "highest"
                and torch.cuda.get_device_capability(device) >= (8, 0))
        flops = table_flops(name, dtype, tf32)
        if flops:
            return DevicePeak(flops, TABLE, name)
    flops = get_available_flops(device, dtype)
    return DevicePeak(float(flops), LIGHTNING, name) if flops else DevicePeak(None, None, name)


@functools.cache
def measured_cpu_flops(dtype: torch.dtype, threads: int) -> float:
    """Best FLOP/s (2·n³ per n×n product) of square ``dtype`` matmuls on ``threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best, deadline = 0.0, time.perf_counter() + _BUDGET_S
        g = torch.Generator().manual_seed(0)
        for n in _SIZES:
            a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
            torch.mm(a, b)  # warm-up: allocation, kernel choice
            for _ in range(_REPEATS):
                start = time.perf_counter()
                torch.mm(a, b)
                seconds = time.perf_counter() - start
                best = max(best, 2 * n**3 / seconds)
            next_s = (_REPEATS + 1) * 8 * seconds  # the next size's warm-up and repeats
            if seconds > _LARGE_S or time.perf_counter() + next_s > deadline:
                break
        return best
    finally:
        torch.set_num_threads(previous)
