"""Run directories: ``logs/<task>/runs/<timestamp>/`` with ``checkpoints/`` and ``summary.json``;
``logs/<task>/latest`` → newest completed run. Every write here is atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ldmlab.utils.errors import ConfigError

SUMMARY = "summary.json"


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def update_latest(task_dir: Path, run_dir: Path) -> Path:
    """Point ``task_dir/latest`` at ``run_dir`` (relative symlink, swapped atomically)."""
    link = task_dir / "latest"
    tmp = task_dir / f".latest.tmp{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(run_dir, task_dir))
    os.replace(tmp, link)
    return link


def task_dir_of(run_dir: Path) -> Path:
    """``logs/<task>/runs/<ts>`` and ``logs/<task>/multiruns/<ts>/<job>`` → ``logs/<task>``."""
    for parent in run_dir.parents:
        if parent.name in ("runs", "multiruns"):
            return parent.parent
    return run_dir.parent


def newest_checkpoint(task_dir: Path, name: str = "last.ckpt") -> Path | None:
    """Most recently written ``<run>/checkpoints/<name>`` of any run or multirun job of the task,
    skipping runs known to have diverged."""
    found = list(task_dir.glob(f"runs/*/checkpoints/{name}"))
    found += list(task_dir.glob(f"multiruns/*/*/checkpoints/{name}"))
    found = [p for p in found if run_status(p.parent.parent) != "diverged"]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / SUMMARY).read_text())


def run_status(run_dir: Path) -> str | None:
    """``status`` of a run's summary (completed | diverged | interrupted); None while it runs."""
    try:
        return read_summary(run_dir).get("status", "completed")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_run_checkpoint(
    ckpt: str | None, log_dir: str, task: str, key: str, fix: str, what: str, missing_fix: str | None = None
) -> Path:
    """An explicit ``.ckpt`` file or run dir (its summary's last checkpoint), or the last checkpoint
    of ``<log_dir>/<task>/latest``; anything missing is a ``ConfigError`` naming ``key`` with ``fix``
    (``missing_fix`` when there is no run at all; default: run the task's make target).
    what: the missing thing in words, e.g. "trained LDM"."""
    if ckpt:
        path = Path(ckpt).expanduser()
        if path.is_dir():
            path = last_checkpoint_of_run(path, key, fix)
        if not path.is_file():
            raise ConfigError(key, f"{path} does not exist", fix)
        return path
    latest = Path(log_dir) / task / "latest"
    if not (latest / SUMMARY).is_file():
        missing_fix = missing_fix or f"run `make {task.replace('_', '-')}`"
        raise ConfigError(key, f"no {what} ({latest}/{SUMMARY} is missing)", missing_fix)
    return last_checkpoint_of_run(latest, key, fix)


def last_checkpoint_of_run(run_dir: Path, key: str, fix: str) -> Path:
    """The ``checkpoints.last`` path named by ``<run_dir>/summary.json``."""
    summary = run_dir / SUMMARY
    if not summary.is_file():
        raise ConfigError(key, f"{run_dir} is a directory without {SUMMARY}", fix)
    try:
        last = json.loads(summary.read_text())["checkpoints"]["last"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(key, f"{summary} is not an ldmlab run summary", fix) from None
    if not isinstance(last, str):
        raise ConfigError(key, f"{summary} names no last checkpoint", fix)
    return Path(last)
