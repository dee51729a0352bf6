"""Where a command's run lives and how it ends: ``<run dir>/summary.json`` and ``logs/<task>/latest``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ldmlab.runs.layout import SUMMARY, update_latest, write_json_atomic


def run_dir() -> Path:
    """This run's folder (Hydra's output dir: ``logs/<task>/runs/<timestamp>``, or a multirun job's)."""
    return Path(HydraConfig.get().runtime.output_dir)


def task_dir(cfg: DictConfig) -> Path:
    """``<paths.log_dir>/<task_name>``: the task's runs and its ``latest`` link."""
    return Path(cfg.paths.log_dir) / cfg.task_name


def finish(cfg: DictConfig, summary: dict, latest: bool = True) -> Path:
    """Write ``summary`` to ``<run dir>/summary.json`` (atomically) and, when ``latest``, point
    ``logs/<task>/latest`` at the run dir; returns the run dir."""
    folder = run_dir()
    write_json_atomic(folder / SUMMARY, summary)
    if latest:
        update_latest(task_dir(cfg), folder)
    return folder
