"""Which checkpoint of a stage-1 run stage 2 loads: ``checkpoints.selected`` of its summary.json
(written by ``ldmlab.runs.selection``, read by ``ldmlab.runs.layout``) on fake run dirs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ldmlab.callbacks.atomic_checkpoint import AtomicModelCheckpoint
from ldmlab.first_stage.autoencoder import resolve_first_stage_checkpoint
from ldmlab.runs.layout import SUMMARY, resolve_run_checkpoint, selected_checkpoint_of_run, update_latest
from ldmlab.runs.selection import checkpoints_summary
from ldmlab.utils.errors import ConfigError

KEY = "first_stage.ckpt"
SELECTING = {"last": "checkpoints/last.ckpt", "best": "checkpoints/best-epoch000.ckpt", "best_score": 0.25,
             "monitor": "val/lpips", "selected": "checkpoints/best-epoch000.ckpt", "selected_by": "val/lpips",
             "selected_score": 0.25, "selected_step": 4}  # what the first test's run writes


def save(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.full((2,), float(step))}}, path)
    return path


def callback(run: Path, monitor: str | None = "val/lpips", best: str = "best-epoch000.ckpt",
             score: float | None = 0.25, select_best: bool = True) -> SimpleNamespace:
    """What ``checkpoints_summary`` reads of a ``ModelCheckpoint`` after fit."""
    best_path = str(run / "checkpoints" / best) if best else ""
    return SimpleNamespace(dirpath=str(run / "checkpoints"), best_model_path=best_path, monitor=monitor,
                           best_model_score=None if score is None else torch.tensor(score),
                           select_best=select_best)


def stage1_run(log_dir: Path, checkpoints: dict, name: str = "A") -> Path:
    """``<log_dir>/train_ae/runs/<name>`` with ``last.ckpt`` (step 8) and ``best-epoch000.ckpt``
    (step 4) on disk, its summary holding ``checkpoints``, and ``latest`` pointing at it."""
    run = log_dir / "train_ae" / "runs" / name
    save(run / "checkpoints" / "last.ckpt", 8)
    save(run / "checkpoints" / "best-epoch000.ckpt", 4)
    (run / SUMMARY).write_text(json.dumps({"status": "completed", "checkpoints": checkpoints}))
    update_latest(log_dir / "train_ae", run)
    return run


def test_the_summary_selects_the_best_by_the_monitor_with_its_score_and_step(tmp_path):
    run = tmp_path / "run"
    save(run / "checkpoints" / "last.ckpt", 8)
    save(run / "checkpoints" / "best-epoch000.ckpt", 4)
    assert checkpoints_summary(callback(run), run) == SELECTING


def test_without_select_best_the_summary_selects_last(tmp_path, caplog):
    run = tmp_path / "run"
    save(run / "checkpoints" / "last.ckpt", 8)
    save(run / "checkpoints" / "best-epoch000.ckpt", 4)
    block = checkpoints_summary(callback(run, select_best=False), run)
    assert block["best"] == "checkpoints/best-epoch000.ckpt"  # still recorded, not selected
    assert (block["selected"], block["selected_by"], block["selected_score"], block["selected_step"]) == \
        ("checkpoints/last.ckpt", "last", None, 8)
    assert caplog.records == []  # not a fallback: nothing to warn about


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"monitor": None, "best": "", "score": None}, "monitor is null"),
    ({"best": "", "score": None}, "no validation ran"),
    ({"best": "best-epoch003.ckpt"}, "best-epoch003.ckpt is missing"),
    ({"score": None}, "no validation since the resume"),
])
def test_a_run_without_a_monitored_best_selects_last_and_says_why(kwargs, why, tmp_path, caplog):
    run = tmp_path / "run"
    save(run / "checkpoints" / "last.ckpt", 8)
    save(run / "checkpoints" / "best-epoch000.ckpt", 4)
    with caplog.at_level(logging.WARNING, "ldmlab.runs.selection"):
        block = checkpoints_summary(callback(run, **kwargs), run)
    assert (block["selected"], block["selected_by"], block["selected_score"], block["selected_step"]) == \
        ("checkpoints/last.ckpt", "last", None, 8)
    assert why in caplog.text and str(run / "checkpoints" / "last.ckpt") in caplog.text


def test_no_checkpoint_callback_selects_nothing(tmp_path):
    block = checkpoints_summary(None, tmp_path)
    assert set(block) >= {"selected", "selected_by", "selected_score", "selected_step"}
    assert all(value is None for value in block.values())


def test_select_best_refuses_weights_only_best_files(tmp_path):
    with pytest.raises(ConfigError) as caught:
        AtomicModelCheckpoint(dirpath=tmp_path, monitor="val/lpips", save_weights_only=True, select_best=True)
    assert caught.value.key == "callbacks.model_checkpoint.save_weights_only"
    assert caught.value.fix.startswith("callbacks.model_checkpoint.save_weights_only=false")
    assert AtomicModelCheckpoint(dirpath=tmp_path, monitor="val/lpips", select_best=True).select_best


def test_unset_first_stage_ckpt_loads_the_best_of_latest_not_last(tmp_path, caplog):
    run = stage1_run(tmp_path, SELECTING)
    best = run / "checkpoints" / "best-epoch000.ckpt"
    with caplog.at_level(logging.INFO, "ldmlab.runs.layout"):
        assert resolve_first_stage_checkpoint(None, str(tmp_path)) == best.resolve()  # the real run dir
    assert f"{KEY} unset" in caplog.text and "its best by val/lpips: 0.25 at step 4" in caplog.text
    assert resolve_first_stage_checkpoint(str(run), "/elsewhere") == best  # a run dir given explicitly
    last = run / "checkpoints" / "last.ckpt"
    assert resolve_first_stage_checkpoint(str(last), str(tmp_path)) == last  # a file: as given
    selection = selected_checkpoint_of_run(run, KEY, "fix")
    assert (selection.path, selection.by, selection.score, selection.step) == (best, "val/lpips", 0.25, 4)


@pytest.mark.parametrize("checkpoints", [
    {"last": "checkpoints/last.ckpt", "best": "checkpoints/best-epoch000.ckpt", "best_score": 0.25,
     "monitor": "val/lpips"},  # written before selection existed
    {"last": "checkpoints/last.ckpt", "best": None, "best_score": None, "monitor": None,
     "selected": "checkpoints/last.ckpt", "selected_by": "last", "selected_score": None, "selected_step": 8},
])
def test_a_summary_that_selects_no_best_gives_last(checkpoints, tmp_path):
    run = stage1_run(tmp_path, checkpoints)
    last = run / "checkpoints" / "last.ckpt"
    assert resolve_first_stage_checkpoint(None, str(tmp_path)) == last.resolve()
    assert selected_checkpoint_of_run(run, KEY, "fix").by == "last"


def test_a_selected_best_that_is_gone_is_refused_with_last_as_the_fix(tmp_path):
    """Never silently another file than the summary names: the user picks last explicitly."""
    run = stage1_run(tmp_path, SELECTING)
    (run / "checkpoints" / "best-epoch000.ckpt").unlink()
    with pytest.raises(ConfigError) as caught:
        resolve_first_stage_checkpoint(None, str(tmp_path))
    assert caught.value.key == KEY and "best-epoch000.ckpt" in caught.value.problem
    assert "which is missing" in caught.value.problem
    fixed = caught.value.fix.split()[0].removeprefix(f"{KEY}=")
    assert resolve_first_stage_checkpoint(fixed, str(tmp_path)) == run.resolve() / "checkpoints" / "last.ckpt"


def test_other_tasks_runs_still_give_last(tmp_path):
    """A stage-2 run (``select_best`` off) selects last: sample / export of a train_ldm run are unchanged."""
    run = tmp_path / "train_ldm" / "runs" / "A"
    save(run / "checkpoints" / "last.ckpt", 8)
    save(run / "checkpoints" / "best-epoch000.ckpt", 4)
    block = checkpoints_summary(callback(run, monitor="val/loss", select_best=False), run)
    (run / SUMMARY).write_text(json.dumps({"checkpoints": block}))
    update_latest(tmp_path / "train_ldm", run)
    assert resolve_run_checkpoint(None, str(tmp_path), "train_ldm", "ckpt", "fix", "trained LDM") == \
        (run / "checkpoints" / "last.ckpt").resolve()
