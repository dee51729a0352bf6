"""Checkpoint every global random stream, per rank, so a resumed run draws what the
uninterrupted one would have drawn."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback


def capture(device: torch.device | None = None) -> dict[str, Any]:
    """This process's torch CPU (and ``device``'s CUDA), numpy and python ``random`` states as
    tensors and plain python values (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of ``capture``."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def reseed(seed: int, step: int, rank: int) -> None:
    """Seed torch (every device), numpy and python ``random`` from (seed, step, rank)."""
    value = int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


class RNGState(Callback):
    """Saves the global RNG states of every rank (``{"ranks": [state_0, state_1, ...]}``) with
    each checkpoint and restores rank r's entry just before the first training step after a
    resume, so nothing run in between (restoring, sanity check, data setup) shifts the streams.

    Validation does not advance training's streams: their state when validation starts is put
    back before the next training step, and a checkpoint written during or after validation
    stores that state. So a run killed after any checkpoint and resumed draws exactly what the
    uninterrupted run draws.

    A checkpoint of another number of ranks (resumed with ``resume_changes=[world_size]``) cannot
    give every rank its stream: each rank's streams are then seeded from (``PL_GLOBAL_SEED``, the
    global step, its rank), deterministic but not what either run would have drawn.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None  # loaded from a checkpoint, not yet applied
        self._stash: dict[str, Any] | None = None  # this rank's state before validation
        self._device: torch.device | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._device = trainer.strategy.root_device

    def state_dict(self) -> dict[str, Any]:
        if self._pending is not None:  # saved again before the restored states were used
            return self._pending
        state = self._stash if self._stash is not None else capture(self._device)
        if dist.is_available() and dist.is_initialized():
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)  # every rank runs state_dict() when saving
            return {"ranks": states}
        return {"ranks": [state]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._stash is None:
            self._stash = capture(self._device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        stash, self._stash = self._stash, None
        if self._pending is not None:
            ranks, self._pending = self._pending["ranks"], None
            if len(ranks) == trainer.world_size:
                restore(ranks[trainer.global_rank], self._device)
            else:
                reseed(int(os.environ.get("PL_GLOBAL_SEED", 0)), trainer.global_step, trainer.global_rank)
            return
        if stash is not None:
            restore(stash, self._device)
