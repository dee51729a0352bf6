"""Validation loss at fixed noise levels, one per bucket of the level range (SD3, MLPerf's stable
diffusion benchmark): unlike a loss at drawn levels, it is comparable between runs and checkpoints
whatever their timestep sampler, and shows where in the noise range a model improves.

The range is split into K equal buckets: [0, T') of the integer steps on a discrete schedule
(T' the objective's horizon, T for the full range), the unit time u ∈ [0, 1] of a continuous
process (levels ``from_unit(u)``: flow's shifted t, EDM's σ on the ρ-curve). Each bucket is
evaluated at one level, its centre (the step (lo + hi) // 2; the level at u's centre), for every
sample, with the noise of the caller's seeded context: a deterministic number per checkpoint,
validation set and world size. Logged as ``val/loss_t<lo>_<hi>`` with the bucket's level range
(discrete: t ∈ [lo, hi); continuous: the levels at its u edges, 3 significant digits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.diffusion.objective import DiffusionObjective
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.utils.errors import FieldError


@dataclass(frozen=True)
class LevelBucket:
    """One bucket [low, high) of noise levels and the level its loss is evaluated at."""

    low: float
    high: float
    level: float
    continuous: bool

    @property
    def name(self) -> str:
        """``loss_t<lo>_<hi>``: integer steps, or the level range to 3 significant digits."""
        if self.continuous:
            return f"loss_t{self.low:.3g}_{self.high:.3g}"
        return f"loss_t{int(self.low)}_{int(self.high)}"

    def levels(self, batch_size: int, device: torch.device) -> Tensor:
        """(batch_size,) copies of the level: float32 on a continuous process, long steps otherwise."""
        dtype = torch.float32 if self.continuous else torch.long
        return torch.full((batch_size,), self.level, dtype=dtype, device=device)


def level_buckets(schedule: NoiseProcess, count: int, horizon: int | None) -> tuple[LevelBucket, ...]:
    """``count`` buckets covering the process's level range without overlap (module.val_t_buckets;
    0: none). horizon: T' of a discrete schedule (``DiffusionObjective.check``), None when continuous."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise FieldError("module", "val_t_buckets", f"must be an int >= 0, got {count!r}", "e.g. {key}=4")
    if count == 0:
        return ()
    if not schedule.continuous:
        if count > horizon:
            raise FieldError("module", "val_t_buckets", f"{count} buckets of the {horizon} trained steps "
                             "would leave some empty", f"at most {horizon}, e.g. {{key}}=4")
        edges = [i * horizon // count for i in range(count + 1)]
        pairs = zip(edges[:-1], edges[1:], strict=True)
        return tuple(LevelBucket(lo, hi, (lo + hi) // 2, False) for lo, hi in pairs)
    edges = schedule.from_unit(torch.linspace(0.0, 1.0, count + 1, dtype=torch.float64)).tolist()
    centres = schedule.from_unit((torch.arange(count, dtype=torch.float64) + 0.5) / count).tolist()
    return tuple(LevelBucket(lo, hi, centre, True)
                 for lo, hi, centre in zip(edges[:-1], edges[1:], centres, strict=True))


def bucket_losses(
    objective: DiffusionObjective, model: nn.ModuleDict, x0: Tensor, batch: dict[str, Any],
    schedule: NoiseProcess, buckets: Sequence[LevelBucket], seeded: Callable[[], AbstractContextManager],
) -> dict[str, Tensor]:
    """{bucket name: the objective on x0 (B, C, h, w) with every sample at the bucket's level}.

    Each bucket runs inside a fresh ``seeded()`` context, so all buckets see the same noise (and
    conditioner draws). Cost: one extra forward pass of the network per bucket (no backward).
    """
    losses = {}
    for bucket in buckets:
        with seeded():
            losses[bucket.name] = objective(model, x0, batch, schedule, t=bucket.levels(len(x0), x0.device))
    return losses
