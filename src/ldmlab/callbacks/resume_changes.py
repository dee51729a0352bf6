"""Make the hyperparameters a resume changed on purpose (``resume_changes``) take effect."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")  # what a schedule scales together


class ResumeChanges(pl.Callback):
    """Lightning restores the optimisers' param groups (learning rates included) and the LR
    schedulers' ``base_lrs`` from the checkpoint, which would silently keep the old values.

    At ``on_fit_start`` (optimisers built from the new config, nothing restored yet) each param
    group's hyperparameters are recorded; at ``on_train_start`` (all restored) they win again:
    a learning rate whose base (``initial_lr``, else ``lr``) changed is rescaled with the
    schedule where it stands — every lr-like key of the group and the scheduler's ``base_lrs``
    × new base / old base, so the next step uses new lr × the schedule's factor at that step —
    and any other hyperparameter that differs (``weight_decay``, ``eps``, ...) takes its new
    value, except momentum terms a scheduler cycles. With another batch size or number of ranks,
    the interrupted epoch's batch count is restated in this run's batches
    (``resumed_batches`` of the data module), so the epoch ends where its data does."""

    def __init__(self) -> None:
        self._fresh: list[list[dict[str, Any]]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fresh = [[{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
                       for opt in trainer.optimizers]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restate_learning_rates(trainer)
        batches = getattr(trainer.datamodule, "resumed_batches", lambda: None)()
        if batches is not None:  # restored as saved (completed one behind); the epoch loop catches up
            current = trainer.fit_loop.epoch_loop.batch_progress.current
            shift = batches - current.processed
            current.ready, current.started = current.ready + shift, current.started + shift
            current.processed, current.completed = current.processed + shift, current.completed + shift

    def _restate_learning_rates(self, trainer: pl.Trainer) -> None:
        cycled = {"betas", "momentum"} if any(getattr(c.scheduler, "cycle_momentum", False)
                                              for c in trainer.lr_scheduler_configs) else set()
        for opt, fresh_groups in zip(trainer.optimizers, self._fresh, strict=True):
            schedulers = [c.scheduler for c in trainer.lr_scheduler_configs if c.scheduler.optimizer is opt]
            for index, (group, fresh) in enumerate(zip(opt.param_groups, fresh_groups, strict=True)):
                base = "initial_lr" if "initial_lr" in group and "initial_lr" in fresh else "lr"
                if fresh[base] != group[base] and group[base]:
                    ratio = fresh[base] / group[base]
                    for key in LR_KEYS:
                        if key in group:
                            group[key] *= ratio
                    for scheduler in schedulers:
                        scheduler.base_lrs[index] *= ratio
                for key, value in fresh.items():
                    if key not in LR_KEYS and key not in cycled and group.get(key) != value:
                        group[key] = value
