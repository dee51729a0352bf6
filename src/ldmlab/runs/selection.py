"""Which checkpoint of a run a later stage loads: the ``checkpoints`` block of ``summary.json``.

``last`` (``last.ckpt``), ``best`` (the best file by ``monitor``, score ``best_score``) and
``selected``: the file that giving this run to a later stage loads (its run dir, or ``latest``:
``ldmlab.runs.layout.selected_checkpoint_of_run``). With ``select_best`` on the monitored
checkpoint callback (stage 1, ``conf/callbacks/autoencoder.yaml``) that is the best file,
``selected_by`` the monitor, ``selected_score`` its value and ``selected_step`` the file's
``global_step``. Otherwise, or when the run has no monitored best (``monitor`` null, no
validation ran, the file is gone), it is ``last.ckpt`` with ``selected_by: "last"``; a
``select_best`` run that falls back says why in a warning.

The best is among this run's own validations: a resume writes into a new run dir, and Lightning
keeps no scores across run dirs, so the comparison starts afresh there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from ldmlab.runs.layout import in_run

log = logging.getLogger(__name__)
EMPTY = dict.fromkeys(("last", "best", "best_score", "monitor", "selected", "selected_by", "selected_score",
                       "selected_step"))


def checkpoints_summary(callback: ModelCheckpoint | None, run_dir: Path) -> dict:
    """The summary's ``checkpoints`` block for ``trainer.checkpoint_callback`` (None: no checkpoints);
    paths relative to ``run_dir`` when inside it."""
    if callback is None:
        return dict(EMPTY)
    last = Path(callback.dirpath) / "last.ckpt"
    best = Path(callback.best_model_path) if Path(callback.best_model_path or "-").is_file() else None
    score = float(callback.best_model_score) if best and callback.best_model_score is not None else None
    block = {"last": in_run(run_dir, last), "best": in_run(run_dir, best), "best_score": score,
             "monitor": callback.monitor}
    selected, by = last, "last"
    if getattr(callback, "select_best", False):
        if (missing := _no_best(callback, best, score)) is None:
            selected, by = best, callback.monitor
        else:
            log.warning("callbacks.model_checkpoint.select_best: the run has no best checkpoint by %s (%s), "
                        "so a later stage given this run loads %s", callback.monitor, missing, last)
    return block | {"selected": in_run(run_dir, selected), "selected_by": by,
                    "selected_score": score if by != "last" else None, "selected_step": _step(selected)}


def _no_best(callback: ModelCheckpoint, best: Path | None, score: float | None) -> str | None:
    """Why the run has no monitored best file to select, or None when it has one."""
    if callback.monitor is None:
        return "monitor is null"
    if not callback.best_model_path:
        return "no validation ran"
    if best is None:
        return f"{callback.best_model_path} is missing"
    if score is None:
        return "no validation since the resume"  # the best path came from the resumed run's state
    return None


def _step(path: Path) -> int | None:
    """The ``global_step`` stored in a checkpoint file (memory-mapped: only its header is read)."""
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
