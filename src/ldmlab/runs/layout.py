"""Run directories: ``logs/<task>/runs/<timestamp>/`` with ``checkpoints/`` and ``summary.json``;
``logs/<task>/latest`` → newest completed run (a relative symlink). Every write here is atomic
(``ldmlab.utils.atomic_output``).

A run dir is self-contained: the paths a summary records into its own run dir are relative to it
(``checkpoints/last.ckpt``), so a copied or moved run dir works without the original; summaries
written before that (absolute, or relative to the working directory) are read relative to where
the run dir is now (``path_in_run``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ldmlab.utils.atomic_output import remove, temp_beside, write_json
from ldmlab.utils.errors import ConfigError

SUMMARY = "summary.json"
LATEST = "latest"
log = logging.getLogger(__name__)


def write_json_atomic(path: Path, payload: dict) -> None:
    """``payload`` as JSON at ``path``, complete or absent (temp file, fsync, rename)."""
    write_json(path, payload)


def in_run(run_dir: Path, path: str | Path | None) -> str | None:
    """What a summary records for ``path``: relative to ``run_dir`` when inside it, else as given."""
    if path is None:
        return None
    relative = os.path.relpath(os.path.realpath(path), os.path.realpath(run_dir))
    return str(path) if relative == ".." or relative.startswith("../") else relative


def path_in_run(run_dir: Path, summary: dict, recorded: str) -> Path:
    """Where a path recorded in ``run_dir``'s summary is now: relative ones are relative to the run
    dir; old absolute ones under the summary's own ``run_dir`` are re-based onto ``run_dir`` (a
    copied or moved run), other absolute ones are kept."""
    path = Path(recorded)
    old_run = summary.get("run_dir")
    if isinstance(old_run, str) and path.is_relative_to(old_run):
        return run_dir / path.relative_to(old_run)
    return path if path.is_absolute() else run_dir / path


def update_latest(task_dir: Path, run_dir: Path) -> Path | None:
    """Point ``task_dir/latest`` at ``run_dir`` (relative symlink, swapped atomically). A real
    folder or file named ``latest`` is never replaced: it stays, with a warning, and None is returned."""
    link = task_dir / LATEST
    if os.path.lexists(link) and not link.is_symlink():
        log.warning("%s is a %s, not ldmlab's link to the newest run, so it was left as it is and not "
                    "pointed at %s; move it away to have it kept up to date", link,
                    "folder" if link.is_dir() else "file", run_dir)
        return None
    task_dir.mkdir(parents=True, exist_ok=True)  # absent when the run dir was put elsewhere (hydra.run.dir)
    tmp = temp_beside(link, suffix="")
    tmp.symlink_to(os.path.relpath(run_dir, task_dir))
    try:
        os.replace(tmp, link)
    except BaseException:
        remove(tmp)
        raise
    return link


def latest_run(task_dir: Path, key: str) -> Path:
    """``task_dir/latest``, which must be ldmlab's link (or absent): a real folder or file there
    is a ``ConfigError`` naming ``key``, with the newest run's checkpoint as the fix."""
    latest = task_dir / LATEST
    if os.path.lexists(latest) and not latest.is_symlink():
        newest = newest_checkpoint(task_dir)
        fix = f"{key}={newest}" if newest else f"move {latest} away, then train a run"
        kind = "folder" if latest.is_dir() else "file"
        raise ConfigError(key, f"{latest} is a {kind}, not the link ldmlab keeps to the newest run", fix)
    return latest


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
    latest = latest_run(Path(log_dir) / task, key)
    if not (latest / SUMMARY).is_file():
        missing_fix = missing_fix or f"run `make {task.replace('_', '-')}`"
        raise ConfigError(key, f"no {what} ({latest}/{SUMMARY} is missing)", missing_fix)
    return last_checkpoint_of_run(latest, key, fix)


def last_checkpoint_of_run(run_dir: Path, key: str, fix: str) -> Path:
    """The ``checkpoints.last`` path named by ``<run_dir>/summary.json`` (``path_in_run``)."""
    summary = run_dir / SUMMARY
    if not summary.is_file():
        raise ConfigError(key, f"{run_dir} is a directory without {SUMMARY}", fix)
    try:
        content = json.loads(summary.read_text())
        last = content["checkpoints"]["last"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(key, f"{summary} is not an ldmlab run summary", fix) from None
    if not isinstance(last, str):
        raise ConfigError(key, f"{summary} names no last checkpoint", fix)
    return path_in_run(run_dir, content, last)
