"""When an every-N-epochs callback should run: on every N-th validation epoch and on the last."""

from __future__ import annotations

import pytorch_lightning as pl


def is_last_epoch(trainer: pl.Trainer) -> bool:
    """True in the epoch that ends training (max_epochs or max_steps reached, or a stop request)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return (
        (max_epochs not in (None, -1) and trainer.current_epoch + 1 >= max_epochs)
        or (max_steps not in (None, -1) and trainer.global_step >= max_steps)
        or trainer.should_stop
    )


def is_due(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """Epochs N−1, 2N−1, … (0-based) and the last one."""
    return is_last_epoch(trainer) or (trainer.current_epoch + 1) % every_n_epochs == 0
