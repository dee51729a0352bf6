"""A resumed run is the run that was started, or it refuses (``ldmlab.config.resume_contract``):
a changed setting is one line naming it (exit 2) and every fix it suggests gets past it; an
opted-in learning rate is the one the next optimiser step uses; another number of ranks is
refused unless opted in. Tiny classifier runs (5 batches per epoch) through the real CLI."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from ldmlab.checkpoints import WORLD_SIZE_KEY
from tests.conftest import run_forked

TINY = ["data.train_subset=80", "data.val_subset=32", "data.batch_size=16", "classifier.widths=[8,16]",
        "classifier.groups=4", "callbacks.last_checkpoint.every_n_train_steps=3", "trainer.max_epochs=10",
        "logger=none"]
STOPPED_AT = 7  # trainer.max_steps of the run resumed: mid-epoch 1 (2 of its 5 batches)


def train(args: list[str], log_dir: Path):
    return run_forked("ldmlab.commands.train", [*TINY, *args], log_dir, config_name="train_classifier")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, fmnist_dir) -> Path:
    """last.ckpt of a run (OneCycleLR over its 7 steps) that max_steps stopped mid-epoch."""
    log_dir = tmp_path_factory.mktemp("stopped")
    out = train([f"trainer.max_steps={STOPPED_AT}"], log_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    return next(log_dir.glob("train_classifier/runs/*/checkpoints/last.ckpt"))


def resume(ckpt: Path, log_dir: Path, *args: str):
    """One more step (a larger max_steps is always allowed) from ``ckpt``."""
    return train([f"ckpt_path={ckpt}", f"trainer.max_steps={STOPPED_AT + 1}", *args], log_dir)


def one_line(out, key: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith(f"error: {key}: "), lines[0]
    return lines[0]


def suggested_fixes(line: str) -> list[list[str]]:
    """Each alternative of the line's fix (``...; or ...``) as the overrides it names."""
    return [re.findall(r"[\w.~+]+=\S+", part) for part in line.split("Fix: ", 1)[1].split("; or ")]


def gets_past(out, line: str) -> None:
    assert out.returncode == 0, f"{line}\n→ {out.stderr[-3000:]}"


CHANGES = ["data.batch_size=8", "module.optimizer.lr=1e-7", "classifier.widths=[8,32]"]


def test_an_opted_in_change_of_the_training_order_mid_epoch_is_refused(stopped, tmp_path):
    change = ["data.train_subset=96", "resume_changes=[data.train_subset]"]
    line = one_line(resume(stopped, tmp_path, *change), "resume_changes")
    assert "32 samples into epoch 1" in line, line
    assert suggested_fixes(line) == [["ckpt_path=null"], []], line
    gets_past(resume(stopped, tmp_path, *change, "ckpt_path=null"), line)
    gets_past(resume(stopped, tmp_path), line)  # the stored values


@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_setting_is_refused_in_one_line_and_each_fix_gets_past_it(stopped, tmp_path, change):
    key = change.split("=")[0]
    line = one_line(resume(stopped, tmp_path, change), "ckpt_path")
    assert f"other settings: {key} " in line and "→" in line, line
    assert not list(tmp_path.rglob("*.ckpt")), "refused before any work"
    fixes = suggested_fixes(line)
    assert [f for fix in fixes for f in fix if f.startswith("resume_changes")] == [f"resume_changes=[{key}]"]
    for fix in fixes:
        out = resume(stopped, tmp_path, change, *fix)
        if key == "classifier.widths" and fix == [f"resume_changes=[{key}]"]:  # the architecture: never
            shapes = one_line(out, "resume_changes")
            assert "network.head.1.weight (10, 16) → (10, 32)" in shapes, shapes
            for again in suggested_fixes(shapes):
                gets_past(resume(stopped, tmp_path, change, *fix, *again), shapes)
            continue
        gets_past(out, line)


def test_an_opted_in_node_that_changes_the_network_has_fixes_that_get_past_it(stopped, tmp_path):
    """Was: the fix restored the whole opted-in node as one flat dict (``classifier={widths:...,
    _target_:...}``), which Hydra reads as a config group option and refuses."""
    change = ["classifier.widths=[8,32]", "resume_changes=[classifier]"]
    line = one_line(resume(stopped, tmp_path, *change), "resume_changes")
    assert "network.head.1.weight (10, 16) → (10, 32)" in line, line
    for fix in suggested_fixes(line):
        gets_past(resume(stopped, tmp_path, *change, *fix), line)


def test_opted_in_betas_take_effect_where_the_schedule_does_not_cycle_them(stopped, tmp_path):
    """OneCycleLR cycles beta1 (as in a fresh run); beta2 is the new config's (was: kept the stored 0.999)."""
    out = resume(stopped, tmp_path, "+module.optimizer.betas=[0.5,0.6]",
                 "resume_changes=[module.optimizer.betas]")
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = next(tmp_path.glob("train_classifier/runs/*/checkpoints/last.ckpt"))
    beta1, beta2 = torch.load(resumed, weights_only=True)["optimizer_states"][0]["param_groups"][0]["betas"]
    assert beta2 == 0.6 and 0.85 <= beta1 <= 0.95, (beta1, beta2)


def test_an_opted_in_learning_rate_is_the_one_the_next_step_uses(stopped, tmp_path):
    """Extended to 14 steps: OneCycleLR re-planned over 14 (max_lr: ${..optimizer.lr}); the
    first resumed step (7) uses 1e-7 × the schedule's factor there, and the weights barely move."""
    before = torch.load(stopped, weights_only=True)["state_dict"]
    args = ["logger=csv", "trainer.log_every_n_steps=1", "trainer.max_steps=14"]
    plain = resume(stopped, tmp_path / "plain", *args)
    lowered = resume(stopped, tmp_path / "lowered", *args, "module.optimizer.lr=1e-7",
                     "resume_changes=[module.optimizer.lr]")
    assert plain.returncode == 0 and lowered.returncode == 0, lowered.stderr[-3000:]

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-7)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-7, total_steps=14, pct_start=0.15)
    for _ in range(STOPPED_AT):
        optimizer.step(), schedule.step()
    expected = optimizer.param_groups[0]["lr"]

    def first_lr_and_move(log_dir: Path) -> tuple[float, float]:
        run = next(log_dir.glob("train_classifier/runs/*"))
        rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
        lr = next(float(r["lr-AdamW"]) for r in rows if r["lr-AdamW"] and int(r["step"]) == STOPPED_AT)
        after = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        return lr, max((after[k].double() - before[k].double()).abs().max().item() for k in before)

    lr, moved = first_lr_and_move(tmp_path / "lowered")
    plain_lr, plain_moved = first_lr_and_move(tmp_path / "plain")
    assert lr == pytest.approx(expected, rel=1e-6), (lr, expected)
    assert plain_lr == pytest.approx(expected * 3e-3 / 1e-7, rel=1e-6), (plain_lr, expected)
    assert moved < 1e-5 < 1e-3 < plain_moved, (moved, plain_moved)  # Adam: 7 steps of about lr


def two_rank_copy(ckpt: Path, tmp_path: Path) -> Path:
    """``ckpt`` as if written by 2 ranks (what a 2-rank gloo run stores: its world size, one RNG
    state per rank, trainer.devices=2)."""
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint[WORLD_SIZE_KEY] = 2
    for key, state in checkpoint["callbacks"].items():
        if key.startswith("RNGState"):
            state["ranks"] = state["ranks"] * 2
    checkpoint["ldmlab_config"]["trainer"]["devices"] = 2
    path = tmp_path / "two_ranks.ckpt"
    torch.save(checkpoint, path)
    return path


def test_another_number_of_ranks_is_refused_unless_opted_in(stopped, tmp_path):
    two = two_rank_copy(stopped, tmp_path)
    line = one_line(resume(two, tmp_path), "ckpt_path")
    assert "written by 2 rank(s), this run has 1" in line, line
    fixes = [fix for fix in suggested_fixes(line) if fix]  # (resuming on 2 ranks is the other)
    assert fixes == [["ckpt_path=null"], ["resume_changes=[world_size]"]], line
    for fix in fixes:
        gets_past(resume(two, tmp_path / fix[0].split("=")[0], *fix), line)
    resumed = next((tmp_path / "resume_changes").glob("train_classifier/runs/*/checkpoints/last.ckpt"))
    position = torch.load(resumed, weights_only=True)
    assert position[WORLD_SIZE_KEY] == 1
    data = position["FashionMNISTDataModule"]
    assert (data["epoch"], data["samples"]) == (1, 2 * 16 + 16)  # the next 16 samples

    unchanged = one_line(resume(stopped, tmp_path, "resume_changes=[world_size]"), "resume_changes")
    assert "world_size is opted in but" in unchanged, unchanged
    for fix in suggested_fixes(unchanged):
        gets_past(resume(stopped, tmp_path / "unchanged", "resume_changes=[world_size]", *fix), unchanged)
