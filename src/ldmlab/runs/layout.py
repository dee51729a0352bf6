"""Run directories: ``logs/<task>/runs/<timestamp>/`` with ``checkpoints/`` and ``summary.json``;
``logs/<task>/latest`` → newest completed run (a relative symlink). Every write here is atomic
(``ldmlab.utils.atomic_output``). A run given to a later stage (its dir, or ``latest``) gives the
checkpoint its summary selects (``ldmlab.runs.selection``).

A run dir is self-contained: the paths a summary records into its own run dir are relative to it
(``checkpoints/last.ckpt``), so a copied or moved run dir works without the original; summaries
written before that (absolute, or relative to the working directory) are read relative to where
the run dir is now (``path_in_run``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
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
    """An explicit ``.ckpt`` file or run dir, or the run ``<log_dir>/<task>/latest`` points at (its
    real path, so what is recorded stays right when ``latest`` moves); a run gives the checkpoint
    its summary selects (``selected_checkpoint_of_run``), logged. Anything missing is a
    ``ConfigError`` naming ``key`` with ``fix`` (``missing_fix`` when there is no run at all;
    default: run the task's make target). what: the missing thing in words, e.g. "trained LDM"."""
    if ckpt:
        return checkpoint_file(Path(ckpt).expanduser(), key, fix)
    latest = latest_run(Path(log_dir) / task, key)
    if not (latest / SUMMARY).is_file():
        missing_fix = missing_fix or f"run `make {task.replace('_', '-')}`"
        raise ConfigError(key, f"no {what} ({latest}/{SUMMARY} is missing)", missing_fix)
    return _existing(_selected(latest.resolve(), key, fix, f"{key} unset, {latest}"), key, fix)


def checkpoint_file(path: Path, key: str, fix: str) -> Path:
    """``path`` when it is a file; for a run dir the checkpoint its summary selects (logged);
    else a ``ConfigError`` naming ``key`` with ``fix``."""
    if path.is_dir():
        path = _selected(path, key, fix, f"{key}={path}")
    return _existing(path, key, fix)


def _selected(run_dir: Path, key: str, fix: str, given: str) -> Path:
    selected = selected_checkpoint_of_run(run_dir, key, fix)
    log.info("%s: loading %s", given, selected)
    return selected.path


def _existing(path: Path, key: str, fix: str) -> Path:
    if not path.is_file():
        raise ConfigError(key, f"{path} does not exist", fix)
    return path


@dataclass(frozen=True)
class Selected:
    """The checkpoint a run's summary selects for a later stage: ``path``, chosen ``by`` the run's
    monitored metric (its ``score`` at optimiser step ``step``) or ``"last"`` (``last.ckpt``)."""

    path: Path
    by: str = "last"
    score: float | None = None
    step: int | None = None

    def __str__(self) -> str:
        if self.by == "last":
            return f"{self.path} (its last checkpoint)"
        return f"{self.path} (its best by {self.by}: {self.score} at step {self.step})"


def selected_checkpoint_of_run(run_dir: Path, key: str, fix: str) -> Selected:
    """``checkpoints.selected`` of ``<run_dir>/summary.json`` (``ldmlab.runs.selection``: stage 1's
    best by its monitored metric), or ``checkpoints.last`` where the summary selects none (written
    before selection existed). A selected best file that is gone is a ``ConfigError`` whose fix
    names the run's last checkpoint: another file than the summary says is never used silently."""
    last = last_checkpoint_of_run(run_dir, key, fix)
    summary = read_summary(run_dir)
    block = summary["checkpoints"]
    recorded, by = block.get("selected"), block.get("selected_by")
    if not isinstance(recorded, str) or not isinstance(by, str) or by == "last":
        return Selected(last)
    path = path_in_run(run_dir, summary, recorded)
    if not path.is_file():
        raise ConfigError(key, f"{run_dir / SUMMARY} selects {path}, its best by {by}, which is missing",
                          f"{key}={last} loads the run's last checkpoint instead" if last.is_file() else fix)
    score, step = block.get("selected_score"), block.get("selected_step")
    return Selected(path, by, float(score) if isinstance(score, (int, float)) else None,
                    step if isinstance(step, int) else None)


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
