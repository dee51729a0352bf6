"""``last.ckpt`` every N optimiser steps and at the end of every epoch: what ``ckpt_path=last``
resumes from."""

from __future__ import annotations

import pytorch_lightning as pl

from ldmlab.callbacks.atomic_checkpoint import AtomicModelCheckpoint


class LastCheckpoint(AtomicModelCheckpoint):
    """Writes only ``<dirpath>/last.ckpt`` (atomically): whenever ``trainer.global_step`` reaches
    or passes a multiple of ``every_n_train_steps`` (0: never mid-epoch), and after each epoch's
    validation (or at the epoch's end when there is none), after the monitored checkpoint
    callback has updated its best. The monitored ``ModelCheckpoint`` keeps the best files and
    stays ``trainer.checkpoint_callback`` (list it first).

    "Passes" matters for manual optimisation with two optimisers (stage 1), whose global step
    advances by 2 per batch once the discriminator trains.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 300) -> None:
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
        if n and trainer.global_step // n > self._last_global_step_saved // n:
            self._save_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        """Never: a crashed step's state is not a resume point."""
