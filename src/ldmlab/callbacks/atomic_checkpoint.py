"""ModelCheckpoint whose files are never half-written and never hold a diverged state."""

from __future__ import annotations

import os
from pathlib import Path
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

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


class AtomicModelCheckpoint(ModelCheckpoint):
    """Same options as ``ModelCheckpoint``; a crash mid-save leaves the previous file intact, and
    a non-finite state is refused (``DivergedError``) before anything is written.
    ``saved_metrics``: the ``val/*`` metrics at the last save (step ``saved_step``), the last
    finite ones."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saved_metrics: dict[str, float] = {}
        self.saved_step = -1

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        ensure_finite_state(trainer, trainer.lightning_module, self.monitor)
        tmp = str(Path(filepath).with_name(f".{Path(filepath).name}.tmp"))
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        metrics = trainer.callback_metrics
        self.saved_metrics = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
        self.saved_step = trainer.global_step
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
