"""``last.ckpt`` every N optimiser steps and at the end of every epoch: what ``ckpt_path=last``
resumes from."""

from __future__ import annotations

import pytorch_lightning as pl

from ldmlab.callbacks.atomic_checkpoint import AtomicModelCheckpoint
from ldmlab.config.types import NonNegativeInt


class LastCheckpoint(AtomicModelCheckpoint):
    """Writes only ``<dirpath>/last.ckpt`` (atomically): whenever ``trainer.global_step`` reaches
    or passes a multiple of ``every_n_train_steps`` (0: never mid-epoch), and after each epoch's
    validation (or at the epoch's end when there is none), after the monitored checkpoint
    callback has updated its best. The monitored ``ModelCheckpoint`` keeps the best files and
    stays ``trainer.checkpoint_callback`` (list it first).

    "Passes" matters for manual optimisation with two optimisers (stage 1), whose global step
    advances by 2 per batch once the discriminator trains.

    A run that stops mid-epoch (``trainer.max_steps`` reached, or ``trainer.should_stop``) saves
    after its last batch and not again when Lightning then ends the epoch: a checkpoint written
    there would mark the epoch finished, and extending the run (a larger ``max_steps``) would
    skip the rest of it. So the extended run continues at the exact next sample.
    """

    def __init__(self, dirpath: str, every_n_train_steps: NonNegativeInt = 300) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        super().__init__(dirpath=dirpath, monitor=None, save_top_k=0, save_last=True,
                         enable_version_counter=False)
        self.every_n = every_n_train_steps

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every_n=self.every_n, last_only=True)

    def _save_last(self, trainer: pl.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_global_step_saved = trainer.global_step  # a resumed run counts from its step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        n = self.every_n
        due = bool(n) and trainer.global_step // n > self._last_global_step_saved // n
        if due or (_stops_mid_epoch(trainer) and self._last_global_step_saved != trainer.global_step):
            self._save_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer) and not self._saved_mid_epoch_stop(trainer):
            self._save_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_save_on_train_epoch_end(trainer) and not self._saved_mid_epoch_stop(trainer):
            self._save_last(trainer)

    def _saved_mid_epoch_stop(self, trainer: pl.Trainer) -> bool:
        """The run stopped mid-epoch and its last batch's state is saved already."""
        return _stops_mid_epoch(trainer) and self._last_global_step_saved == trainer.global_step

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        """Never: a crashed step's state is not a resume point."""


def _stops_mid_epoch(trainer: pl.Trainer) -> bool:
    """Training ends after the current batch although the epoch has batches left."""
    loop = trainer.fit_loop
    progress = loop.epoch_loop.batch_progress
    if progress.is_last_batch or progress.current.ready >= trainer.num_training_batches:
        return False
    return (0 <= loop.max_steps <= trainer.global_step) or (trainer.should_stop and loop._can_stop_early)
