"""Hydra entry point for every training task (``--config-name train_ae | train_ldm | ...``).

Composes data, module, callbacks, loggers and trainer from the config, fits, then writes
``summary.json`` (``status``: completed | diverged | interrupted) and, for a completed run with
finite weights, points ``logs/<task>/latest`` at it. Bad input and divergence end with one line
on stderr naming the config key and the fix, and exit status 2.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ldmlab.callbacks.atomic_checkpoint import AtomicModelCheckpoint, ensure_finite_state
from ldmlab.callbacks.resume_changes import ResumeChanges
from ldmlab.callbacks.store_config import StoreConfig
from ldmlab.checkpoints import CONFIG_KEY, WORLD_SIZE_KEY, read_checkpoint
from ldmlab.commands.cli import command
from ldmlab.commands.finish import finish, run_dir, task_dir
from ldmlab.config.resume_contract import ResumePoint, check_config, check_shapes, check_world_size
from ldmlab.config.settings import TrainSettings
from ldmlab.config.shipped import shipped_value
from ldmlab.config.trainer_knobs import REFUSALS, check_trainer, named_knob
from ldmlab.config.types import NOT_GIVEN
from ldmlab.optim.lr_scaling import scale_learning_rates
from ldmlab.runs.ddp_jobs import job_ranks
from ldmlab.runs.layout import in_run, newest_checkpoint
from ldmlab.runs.selection import checkpoints_summary
from ldmlab.utils.errors import ConfigError, DivergedError
from ldmlab.utils.precision import resolve_precision

log = logging.getLogger(__name__)
# Lightning warnings about what ldmlab does on purpose (frozen LPIPS / first stage stay in eval
# mode; bf16 model summaries; its own pytree use under this torch): stderr is kept for errors.
QUIET_WARNINGS = (r"Found \d+ module\(s\) in eval mode",
                  r"Precision .* is not supported by the model summary",
                  r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                  r"The dirpath has changed from")  # a resume writes into its own run dir


def resolve_resume(ckpt_path: str | None, task: str, task_dir: Path,
                   run_dir: Path | None = None) -> ResumePoint | None:
    """``None`` → fresh start; ``"last"`` → newest ``last.ckpt`` of this task; ``"auto"`` → this
    run dir's ``last.ckpt`` if there is one, else a fresh start (a requeued cluster job: its
    launch id, hence its run dir, stays the same); else a file path. The file is read once here
    (weights only) and must be a checkpoint of the same task; what the resume contract
    (``ldmlab.config.resume_contract``) compares is kept of it."""
    if ckpt_path == "auto":
        own = run_dir / "checkpoints" / "last.ckpt" if run_dir is not None else None
        ckpt_path = str(own) if own is not None and own.is_file() else None
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        found = newest_checkpoint(task_dir)
        if found is None:
            raise ConfigError("ckpt_path", f"no last.ckpt under {task_dir}", "start fresh: ckpt_path=null")
        ckpt_path = str(found)
    fix = f"start fresh with ckpt_path=null, or give a {task} checkpoint (e.g. ckpt_path=last)"
    checkpoint = read_checkpoint(ckpt_path, "ckpt_path", fix)
    written_by = (checkpoint.get(CONFIG_KEY) or {}).get("task_name")
    if written_by != task or "loops" not in checkpoint:
        raise ConfigError("ckpt_path", f"{ckpt_path} is not a resumable {task} checkpoint "
                          f"(written by {written_by or 'something else'})", fix)
    return ResumePoint.of(ckpt_path, checkpoint, CONFIG_KEY, WORLD_SIZE_KEY)


def ddp_strategy(strategy, module: pl.LightningModule):
    """``trainer.strategy``, except that plain ``ddp`` looks for unused parameters (an extra
    autograd traversal per step) only for modules that leave some idle (``ddp_find_unused_parameters``)."""
    if strategy == "ddp" and getattr(module, "ddp_find_unused_parameters", False):
        return "ddp_find_unused_parameters_true"
    return strategy


def fit(cfg: DictConfig) -> dict:
    """Train as configured and return the summary written to ``<run_dir>/summary.json``."""
    started = time.time()
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    pl.seed_everything(cfg.seed, workers=True)
    resume = resolve_resume(cfg.get("ckpt_path"), cfg.task_name, task_dir(cfg), run_dir())
    opted = check_config(resume, cfg) if resume else []  # before any work

    check_trainer(cfg.trainer, "trainer", shipped_value)
    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    module: pl.LightningModule = instantiate(cfg.module)
    if opted:
        check_shapes(resume, module, opted, cfg)
    if hasattr(module, "check_data"):
        module.check_data(datamodule)
    loggers = [instantiate(lg) for lg in cfg.get("logger", {}).values() if lg]
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c]
    if resume:
        callbacks.append(ResumeChanges())
    callbacks.append(StoreConfig(OmegaConf.to_container(cfg, resolve=True)))
    if not loggers:  # nothing to monitor into
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    strategy = ddp_strategy(cfg.trainer.strategy, module)
    trainer: pl.Trainer = instantiate(cfg.trainer, precision=precision, callbacks=callbacks,
                                      logger=loggers or False, strategy=strategy)
    if resume:
        check_world_size(resume, trainer.world_size, opted)
    processes = trainer.world_size * trainer.accumulate_grad_batches
    lr_scale = scale_learning_rates(module, cfg.lr_scaling, processes)
    log.info("effective batch %d × %d = %d; lr_scaling=%s: learning rates × %g", datamodule.batch_size,
             processes, datamodule.batch_size * processes, cfg.lr_scaling, lr_scale)
    for logger in loggers:
        logger.log_hyperparams(callbacks[-1].config)

    status, stopped_by = "completed", None
    try:
        with job_ranks():
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume and resume.path, weights_only=True)
            ensure_finite_state(trainer, module)  # steps after the last checkpoint may have diverged
    except DivergedError as err:
        status, stopped_by = "diverged", err
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl+C (Lightning exits 1), SIGTERM
        status, stopped_by = "interrupted", err
    except REFUSALS as err:  # a knob Lightning judges only once the data are known
        if (culprit := named_knob(err, cfg.trainer, "trainer", shipped_value)) is None:
            raise
        raise culprit from err

    summary = build_summary(cfg, trainer, run_dir(), time.time() - started, resume and resume.path, status)
    if stopped_by is not None:
        summary["stopped_by"] = " ".join(str(stopped_by).split()) or type(stopped_by).__name__
    summary |= {"effective_batch_size": datamodule.batch_size * processes, "lr_scale": lr_scale}
    for part in (module, *callbacks):
        if hasattr(part, "summary_extras"):
            summary |= part.summary_extras()
    if trainer.is_global_zero:
        finish(cfg, summary, latest=status == "completed")
    if isinstance(stopped_by, SIGTERMException):
        raise SystemExit(143) from None  # 128 + SIGTERM: not a success
    if stopped_by is not None:
        raise stopped_by
    for logger in loggers:
        logger.finalize("success")
    return summary


def build_summary(cfg, trainer: pl.Trainer, run_dir: Path, seconds: float, resumed: str | None,
                  status: str = "completed"):
    """The run's summary; a diverged run reports the metrics of its last (finite) checkpoint."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if status == "diverged":
        saves = [c for c in trainer.checkpoint_callbacks if isinstance(c, AtomicModelCheckpoint)]
        metrics = max(saves, key=lambda c: c.saved_step).saved_metrics if saves else {}
    return {
        "task": cfg.task_name,
        "status": status,
        "config": ".hydra/config.yaml",  # paths inside the run dir are relative to it (run_layout.in_run)
        "metrics": metrics,
        "checkpoints": checkpoints_summary(trainer.checkpoint_callback, run_dir),  # and the one stage 2 loads
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "precision": str(trainer.precision),
        "wallclock_seconds": round(seconds, 1),
        "resumed_from": in_run(run_dir, resumed),
    }


def objective(cfg: DictConfig) -> float | None:
    """Train (``fit``); return the value of ``optimized_metric`` (what a sweeper such as Optuna
    optimises), or None where the run has none. Under a sweeper that optimises, a metric unset or
    missing from the run is the user's error (the sweeper would fail every trial, then crash)."""
    metric, optimising = cfg.get("optimized_metric"), _optimising_sweeper()
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor", default="val/loss")
    fix = f"{'+' if shipped_value('optimized_metric') is NOT_GIVEN else ''}optimized_metric={monitor}"
    if metric is None and optimising:
        raise ConfigError("optimized_metric", f"the sweeper {HydraConfig.get().sweeper._target_} optimises "
                          "it, but it is not set", fix)
    summary = fit(cfg)
    metrics = summary["metrics"]
    if optimising and not metrics:
        raise ConfigError("optimized_metric", f"the run ended before its first validation, so it has no "
                          f"{metric}", "validate within the run, e.g. trainer.val_check_interval=1")
    if optimising and metric not in metrics:
        raise ConfigError("optimized_metric", f"{metric} is not a metric of the run (it has "
                          f"{', '.join(sorted(metrics))})", fix)
    return metrics.get(metric) if metric is not None else None


def _optimising_sweeper() -> bool:
    """A multirun whose sweeper optimises a returned value (any sweeper but Hydra's basic one)."""
    hydra = HydraConfig.get()
    sweeper = str(hydra.sweeper.get("_target_", ""))
    return hydra.mode == RunMode.MULTIRUN and not sweeper.endswith("BasicSweeper")


main = command(objective, "train_ae", TrainSettings)

if __name__ == "__main__":
    main()
