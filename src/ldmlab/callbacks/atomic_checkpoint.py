"""ModelCheckpoint whose files are never half-written and never hold a diverged state.

A checkpoint is written under a temporary name unique to the process (``ldmlab.utils.atomic_output``),
fsynced, renamed onto its name and the folder fsynced; if the write fails (a full disk: ENOSPC) the
temporary file is removed, the previous checkpoint stays as it was, and every rank raises.
"""

from __future__ import annotations

import os
from pathlib import Path
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from ldmlab.utils.atomic_output import disk_full, fsync, remove, temp_beside
from ldmlab.utils.errors import FieldError
from ldmlab.utils.finite import describe, diverged, nonfinite_state


def ensure_finite_state(trainer: pl.Trainer, module: pl.LightningModule, monitor: str | None = None) -> None:
    """Raise ``DivergedError`` (on every rank) if any rank's weights, buffers, EMA, optimiser
    state, validation metrics (``val/*``) or ``monitor`` hold NaN/Inf."""
    logged = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/") or k == monitor}
    found = nonfinite_state(module, trainer.optimizers, logged)
    if trainer.strategy.reduce_boolean_decision(found is not None, all=False):
        index, names = found or (0, ["the state of another rank"])
        raise diverged(module, trainer.optimizers, index, f"training diverged by step {trainer.global_step}: "
                       f"{describe(names)}; no checkpoint written")


def publish_checkpoint(trainer: pl.Trainer, path: Path, weights_only: bool) -> None:
    """Save to a temporary file beside ``path`` (rank 0 writes), fsync, rename onto ``path``. A
    failure on rank 0 removes the temporary file and raises there (a full disk as
    ``DiskFullError``); the other ranks then raise too instead of waiting for it."""
    tmp, failure = temp_beside(path, suffix=".tmp"), None
    try:
        trainer.save_checkpoint(tmp, weights_only)
    except Exception as err:  # noqa: BLE001 - re-raised below, once every rank knows
        failure = err
        trainer.strategy.barrier("Trainer.save_checkpoint")  # the one the failed save skipped
    if failure is None and trainer.is_global_zero:
        try:
            fsync(tmp)
            os.replace(tmp, path)
            fsync(path.parent)
        except OSError as err:
            failure = err
    if trainer.strategy.reduce_boolean_decision(failure is not None, all=False):
        remove(tmp)
        if failure is None:
            raise RuntimeError(f"writing {path} failed on another rank")
        cause = disk_full(failure, path)
        if cause is failure:
            raise failure
        raise cause from failure


class AtomicModelCheckpoint(ModelCheckpoint):
    """Same options as ``ModelCheckpoint``; a crash mid-save leaves the previous file intact, and
    a non-finite state is refused (``DivergedError``) before anything is written.
    ``saved_metrics``: the ``val/*`` metrics at the last save (step ``saved_step``), the last
    finite ones.

    select_best: the run's summary selects the best file by ``monitor`` as the checkpoint a later
    stage loads from the run (``ldmlab.runs.selection``; stage 1); else ``last.ckpt``. The best
    file must then be a full checkpoint (it carries the config stage 2 rebuilds the network from).
    """

    def __init__(self, *args, select_best: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if select_best and self.save_weights_only:
            raise FieldError("model_checkpoint", "save_weights_only",
                             "a weights-only best checkpoint lacks the config a later stage rebuilds the "
                             "network from, yet select_best is on",
                             "{key}=false (or {part}.select_best=false)")
        self.select_best = select_best
        self.saved_metrics: dict[str, float] = {}
        self.saved_step = -1

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        ensure_finite_state(trainer, trainer.lightning_module, self.monitor)
        publish_checkpoint(trainer, Path(filepath), self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        metrics = trainer.callback_metrics
        self.saved_metrics = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
        self.saved_step = trainer.global_step
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
