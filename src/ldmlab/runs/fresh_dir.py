"""A command's run dir is its own: ``hydra.run.dir`` (``hydra.sweep.dir`` under ``-m``) must be
missing or empty when the command starts, so that nothing already there — a user's files, another
run's checkpoints, samples or ``.hydra/`` config — is replaced or appended to. ``FreshRunDir`` (a
Hydra callback of conf/hydra/default.yaml) checks it before Hydra writes anything into it; a
taken folder, a link, a file or a path under a file ends the command in one line naming the key,
with a free folder as the fix.

Not checked where a run dir is shared on purpose: by the ranks of one launch (torchrun, srun with
several tasks, Lightning's own DDP children: ``LOCAL_RANK`` / ``RANK`` set, or ``SLURM_NTASKS`` > 1).
A run dir of the same task (its ``.hydra/config.yaml`` says so) is accepted when a training job
resumes into it with ``ckpt_path=auto`` (a requeued job), or when it holds nothing but what Hydra
wrote as that command started (``.hydra/`` and ``<task>.log``: a start that failed before any output).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ldmlab.utils.errors import ConfigError
from ldmlab.utils.output_dir import checked_output_dir, free_name

LAUNCHED_RANK = ("LOCAL_RANK", "RANK")  # set for every rank by torchrun, for its children by Lightning


class RunDirTaken(BaseException):
    """The run dir cannot be this command's; ``error`` names the key and the fix. A BaseException:
    Hydra turns a callback's ``Exception`` into a warning, and the command must not start."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def launched_rank(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is one rank of a launch whose ranks share one run dir."""
    try:
        tasks = int(environ.get("SLURM_NTASKS", "1"))
    except ValueError:
        tasks = 1
    return any(name in environ for name in LAUNCHED_RANK) or tasks > 1


def _own_run(folder: Path, task: object) -> bool:
    """Whether ``folder`` is a run dir of ``task`` (its ``.hydra/config.yaml``, read as data, says so)."""
    try:
        stored = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(stored, dict) and stored.get("task_name") == task


def check_fresh(folder: str | Path, key: str, task: object = None, resumes: bool = False) -> None:
    """Raise ``RunDirTaken`` unless ``folder`` can be created or is an empty folder, or is a run dir
    of ``task`` that holds only Hydra's start files (any run dir of it when ``resumes``:
    ``ckpt_path=auto``)."""
    try:
        folder = checked_output_dir(folder, key)
    except ConfigError as err:
        raise RunDirTaken(err) from None
    held = sorted(os.listdir(folder)) if folder.is_dir() else []
    started_only = set(held) <= {".hydra", f"{task}.log"}
    if not held or (task is not None and (resumes or started_only) and _own_run(folder, task)):
        return
    shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
    raise RunDirTaken(ConfigError(
        key, f"{folder} already holds {shown}; every command writes into a folder of its own, so that no "
                "file it did not write is replaced", f"{key}={free_name(folder)}"))


class FreshRunDir(Callback):
    """Hydra callback: the run dir (or sweep dir) is checked before Hydra writes into it."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not launched_rank():
            check_fresh(config.hydra.run.dir, "hydra.run.dir", config.get("task_name"),
                        resumes=config.get("ckpt_path") == "auto")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not launched_rank():
            check_fresh(config.hydra.sweep.dir, "hydra.sweep.dir")
