"""Validation that draws the same t and noise on every pass, so its curves are comparable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded_validation(module, batch_idx: int) -> Iterator[None]:
    """Inside: the CPU RNG (and the CUDA RNG of ``module.device``) seeded with
    ``batch_idx + 7919 · module.global_rank``; outside, all RNG states are as before."""
    devices = [module.device.index or 0] if module.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(batch_idx + 7919 * module.global_rank)
        yield
