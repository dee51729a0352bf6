"""Progress bar that suits the terminal: Rich when interactive, periodic plain lines otherwise.

Either bar reads the logged metrics (``get_metrics``: a host sync, ``.item()`` of each tensor) only
when it redraws, never per step: the plain bar every ``refresh_rate`` steps, the Rich bar at most
every ``min_interval_s`` seconds (Lightning's own Rich bar reads them after every batch).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.callbacks.progress import ProgressBar

from ldmlab.config.types import NonNegativeInt


class ThrottledRichProgressBar(RichProgressBar):
    """``RichProgressBar`` that redraws (and reads the metrics) at most every ``min_interval_s``
    seconds, and at an epoch's last batch."""

    def __init__(self, min_interval_s: float = 0.5) -> None:
        super().__init__()
        self.min_interval_s, self._drawn = min_interval_s, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        now = time.monotonic()
        if now - self._drawn >= self.min_interval_s or batch_idx + 1 >= self.total_train_batches:
            self._drawn = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def progress_bar(refresh_rate: NonNegativeInt = 50) -> ProgressBar:
    """Rich progress bar on a TTY; in batch jobs (CI, SLURM, ``> log``) a TQDM bar refreshed
    every ``refresh_rate`` steps so logs show progress without flooding."""
    if sys.stdout.isatty():
        return ThrottledRichProgressBar()
    return TQDMProgressBar(refresh_rate=refresh_rate)
