"""The collectives ldmlab's own code needs (sweeps, the latent cache), as no-ops in a single
process (no initialised process group)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
Rows = torch.Tensor | dict[str, torch.Tensor]


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gathered(obj: T) -> list[T]:
    """Every rank's picklable ``obj`` in rank order (a barrier); ``[obj]`` in one process."""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def gather_chunks(local: dict[int, Rows]) -> Rows | None:
    """Every rank's ``{chunk index: rows}`` concatenated in chunk order on rank 0 (None on the
    other ranks). Rows: an (n_i, ...) CPU tensor, or a ``{name: (n_i, ...) CPU tensor}`` dict (the
    same names in every chunk), concatenated name by name. Chunk sizes may differ between chunks
    and ranks."""
    rank, world = rank_and_world()
    gathered = [local]
    if world > 1:
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(local, gathered, dst=0)
    if rank != 0:
        return None
    merged = {index: chunk for part in gathered for index, chunk in part.items()}
    chunks = [merged[index] for index in sorted(merged)]
    if chunks and isinstance(chunks[0], dict):
        return {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
    return torch.cat(chunks)


def on_rank_zero(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result sent to every rank. If it raises, rank 0 re-raises the
    error and the other ranks raise a RuntimeError quoting it (so no rank waits forever)."""
    rank, world = rank_and_world()
    if world == 1:
        return compute()
    payload: list = [None]
    error: BaseException | None = None
    if rank == 0:
        try:
            payload[0] = ("ok", compute())
        except Exception as err:  # re-raised below, once the other ranks know
            error, payload[0] = err, ("error", f"{type(err).__name__}: {err}")
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if error is not None:
        raise error
    if status == "error":
        raise RuntimeError(f"rank 0 failed while computing the sweep metrics: {value}")
    return value
