"""Where a fit stands in its training data, read from Lightning's batch progress: what a data
module's ``state_dict`` stores so that a resumed run continues at the next sample."""

from __future__ import annotations

from typing import NamedTuple

import pytorch_lightning as pl


class FitPosition(NamedTuple):
    """``epoch`` and the batches of it processed on each rank; an epoch that is over reads as
    (the next epoch, 0)."""

    epoch: int
    batches: int


def fit_position(trainer: pl.Trainer | None) -> FitPosition | None:
    """The position of a running fit (None outside one)."""
    if trainer is None or trainer.state.fn != "fit":
        return None
    progress = trainer.fit_loop.epoch_loop.batch_progress
    if progress.current.processed >= trainer.num_training_batches or progress.is_last_batch:
        return FitPosition(int(trainer.current_epoch) + 1, 0)
    return FitPosition(int(trainer.current_epoch), progress.current.processed)
