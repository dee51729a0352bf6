"""Progress bar that suits the terminal: Rich when interactive, periodic plain lines otherwise."""

from __future__ import annotations

import sys

from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.callbacks.progress import ProgressBar

from ldmlab.config.types import NonNegativeInt


def progress_bar(refresh_rate: NonNegativeInt = 50) -> ProgressBar:
    """Rich progress bar on a TTY; in batch jobs (CI, SLURM, ``> log``) a TQDM bar refreshed
    every ``refresh_rate`` steps so logs show progress without flooding."""
    if sys.stdout.isatty():
        return RichProgressBar()
    return TQDMProgressBar(refresh_rate=refresh_rate)
