"""Make the config changes a resume was allowed (``ldmlab.config.resume_contract``) take effect."""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl

LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")  # what a schedule scales together
# an LR scheduler's progress (restored as saved), for torch's schedulers: the rest of its state
# is its plan, set by its constructor from the config (new config wins)
PROGRESS = frozenset({"last_epoch", "_step_count", "_last_lr", "base_lrs", "_get_lr_called_within_step",
                      "_is_initial", "verbose", "lr_lambdas", "best", "num_bad_epochs", "cooldown_counter",
                      "T_cur", "T_i", "_schedulers"})


class ResumeChanges(pl.Callback):
    """Lightning restores the optimisers' param groups (learning rates included), the LR
    schedulers' whole state and the batch count of the interrupted epoch from the checkpoint,
    which would silently keep the old run's values. Added to every resumed run; a no-op when
    nothing changed (the exact resume).

    At ``on_fit_start`` (optimisers and schedulers built from the new config, nothing restored
    yet) their settings are recorded; at ``on_train_start`` (all restored) the new ones win:

    - a scheduler's plan (e.g. OneCycleLR's ``total_steps`` after a larger ``trainer.max_steps``);
    - a learning rate whose base (``initial_lr``, else ``lr``) changed (``resume_changes``): every
      lr-like key of the group and the scheduler's ``base_lrs`` × new base / old base, so the next
      step uses the new lr × the schedule's factor at that step;
    - any other hyperparameter that differs (``weight_decay``, ``eps``, ...), except momentum
      terms a scheduler cycles (of ``betas``, beta1; beta2 is restated);
    - with another batch size or number of ranks, the interrupted epoch's batch count restated
      in this run's batches (``resumed_batches`` of the data module), so the epoch ends where
      its data does.
    """

    def __init__(self) -> None:
        self._groups: list[list[dict[str, Any]]] = []
        self._plans: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._groups = [[_without(g, {"params"}) for g in opt.param_groups] for opt in trainer.optimizers]
        self._plans = [_without(c.scheduler.state_dict(), PROGRESS) for c in trainer.lr_scheduler_configs]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        replanned = self._restore_plans(trainer)
        self._restate_hyperparameters(trainer, replanned)
        batches = getattr(trainer.datamodule, "resumed_batches", lambda: None)()
        if batches is not None:  # restored as saved (completed one behind); the epoch loop catches up
            current = trainer.fit_loop.epoch_loop.batch_progress.current
            shift = batches - current.processed
            current.ready, current.started = current.ready + shift, current.started + shift
            current.processed, current.completed = current.processed + shift, current.completed + shift

    def _restore_plans(self, trainer: pl.Trainer) -> set[int]:
        """Put the new plans back; the ids of the optimisers whose scheduler changed plan."""
        replanned = set()
        for config, plan in zip(trainer.lr_scheduler_configs, self._plans, strict=True):
            state = config.scheduler.state_dict()
            changed = {k: v for k, v in plan.items() if state.get(k) != v}
            if changed:
                config.scheduler.__dict__.update(changed)
                replanned.add(id(config.scheduler.optimizer))
        return replanned

    def _restate_hyperparameters(self, trainer: pl.Trainer, replanned: set[int]) -> None:
        configs = trainer.lr_scheduler_configs
        cycling = any(getattr(c.scheduler, "cycle_momentum", False) for c in configs)
        cycled = {"betas", "momentum"} if cycling else set()
        for opt, fresh_groups in zip(trainer.optimizers, self._groups, strict=True):
            schedulers = [c.scheduler for c in configs if c.scheduler.optimizer is opt]
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
                    if key in LR_KEYS or group.get(key) == value:
                        continue
                    if key not in cycled:
                        group[key] = value
                    elif key == "betas":  # the scheduler cycles beta1 only: beta2 is the config's
                        group[key] = (group[key][0], *value[1:])
            for scheduler in schedulers if id(opt) in replanned else ():
                scheduler._get_lr_called_within_step = True  # get_lr() at the restored step, new plan
                try:
                    for group, lr in zip(opt.param_groups, scheduler.get_lr(), strict=True):
                        group["lr"] = lr
                finally:
                    scheduler._get_lr_called_within_step = False
                scheduler._last_lr = [group["lr"] for group in opt.param_groups]


def _without(state: dict, keys) -> dict:
    return copy.deepcopy({k: v for k, v in state.items() if k not in keys})
