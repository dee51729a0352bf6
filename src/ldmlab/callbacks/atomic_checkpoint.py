"""ModelCheckpoint whose files are never half-written: save to a temp file, then rename."""

from __future__ import annotations

import os
from pathlib import Path
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class AtomicModelCheckpoint(ModelCheckpoint):
    """Same options as ``ModelCheckpoint``; a crash mid-save leaves the previous file intact."""

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        tmp = str(Path(filepath).with_name(f".{Path(filepath).name}.tmp"))
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
