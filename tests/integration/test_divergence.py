"""A diverged run never lands as success: exit 2 with one line naming the learning rate to
lower, no checkpoint holding NaN/Inf, ``latest`` untouched, ``summary.json`` status
"diverged" with the last finite metrics, and ``ckpt_path=last`` skips the run.

Tiny epochs of one batch make the divergence land on an epoch's last step (the case that
used to exit 0 with NaN last/best checkpoints). The first case runs through the real CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ldmlab.commands.train import resolve_resume
from tests.conftest import TINY_AE, TINY_LDM, compose_config, run_cli, run_forked

ONE_BATCH_EPOCHS = ["data.train_subset=16", "data.val_subset=16", "data.batch_size=16"]
AE = [*TINY_AE, *ONE_BATCH_EPOCHS, "module.warmup_steps=0", "module.gradient_clip_val=null"]


def copy_logs(log_dir: Path, tmp_path: Path) -> Path:
    """A copy of a fixture's log dir (a completed run that ``latest`` points at)."""
    return Path(shutil.copytree(log_dir, tmp_path / "logs", symlinks=True))


def tensors(node):
    if torch.is_tensor(node):
        yield node
    elif isinstance(node, dict | list | tuple):
        for value in node.values() if isinstance(node, dict) else node:
            yield from tensors(value)


def assert_diverged(out, log_dir: Path, task: str, key: str, latest_before: Path | None) -> dict:
    """The run's contract (its suggested fix composes with its command); returns its summary."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert lines[-1].startswith(f"error: {key}: training diverged"), out.stderr[-3000:]
    fix = lines[-1].split(" Fix: lower it, e.g. ")[1]
    command = [a for a in out.args if "=" in a]  # its overrides
    assert fix.startswith(f"{key}=") and compose_config(task, [*command, fix]).module
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in out.stderr
    for path in log_dir.rglob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # weights, EMA, optimisers
        state = [checkpoint["state_dict"], checkpoint["optimizer_states"]]
        assert all(bool(t.isfinite().all()) for t in tensors(state) if t.is_floating_point()), path
    latest = log_dir / task / "latest"
    assert (latest.resolve() if latest.exists() else None) == latest_before
    summaries = [json.loads(p.read_text()) for p in log_dir.glob(f"{task}/runs/*/summary.json")]
    diverged = [s for s in summaries if s["status"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["stopped_by"] == lines[-1].removeprefix("error: ")
    assert all(s["status"] == "completed" for s in summaries if s is not diverged[0])
    print(lines[-1])
    return diverged[0]


def test_stage1_lr_diverging_on_an_epochs_last_step(tiny_ae_ckpt, tmp_path):
    log_dir = copy_logs(tiny_ae_ckpt.parents[4], tmp_path)
    latest = (log_dir / "train_ae" / "latest").resolve()
    args = [*AE, "trainer.max_epochs=2", "module.optimizer.lr=1e30"]
    out = run_cli("ldmlab.commands.train", args, log_dir)
    summary = assert_diverged(out, log_dir, "train_ae", "module.optimizer.lr", latest)
    assert summary["metrics"] == {} and summary["checkpoints"]["best"] is None  # nothing was saved


def test_discriminator_divergence_names_its_lr_and_last_skips_the_run(tiny_ae_ckpt, tmp_path):
    log_dir = copy_logs(tiny_ae_ckpt.parents[4], tmp_path)
    task_dir = log_dir / "train_ae"
    completed = next(task_dir.glob("runs/*/checkpoints/last.ckpt"))
    args = [*AE, "trainer.max_epochs=3", "loss.disc_start=0", "module.disc_optimizer.lr=1e10"]
    out = run_forked("ldmlab.commands.train", args, log_dir)
    key = "module.disc_optimizer.lr"
    summary = assert_diverged(out, log_dir, "train_ae", key, completed.parents[1].resolve())
    assert "loss.discriminator." in summary["stopped_by"]
    run = next(p.parent for p in task_dir.glob("runs/*/summary.json") if json.loads(p.read_text()) == summary)
    last = run / summary["checkpoints"]["last"]  # relative to the run dir
    assert last.is_file(), "a finite epoch was saved before diverging"
    assert "val/lpips" in summary["metrics"], "the metrics of that last finite checkpoint"
    assert last.stat().st_mtime > completed.stat().st_mtime
    assert resolve_resume("last", "train_ae", task_dir).path == str(completed)


def test_stage2_lr_divergence(tiny_ldm_run, tiny_ae_ckpt, tmp_path):
    log_dir = copy_logs(tiny_ldm_run, tmp_path)
    latest = (log_dir / "train_ldm" / "latest").resolve()
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", "logger=none", *TINY_LDM, *ONE_BATCH_EPOCHS,
            "module.scale_fit_batches=1", "trainer.max_epochs=2", "trainer.gradient_clip_val=null",
            "callbacks.image_logger=null", "module.optimizer.lr=1e30"]
    out = run_forked("ldmlab.commands.train", args, log_dir, config_name="train_ldm")
    assert_diverged(out, log_dir, "train_ldm", "module.optimizer.lr", latest)


def test_classifier_lr_divergence(tmp_path, fmnist_dir):
    args = ["logger=none", "data.train_subset=32", "data.val_subset=32", "data.batch_size=32",
            "classifier.widths=[8,16]", "classifier.groups=4", "trainer.max_epochs=2",
            "module.optimizer.lr=1e30"]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name="train_classifier")
    assert_diverged(out, tmp_path, "train_classifier", "module.optimizer.lr", None)
    assert "module.optimizer.lr=1e+29" in out.stderr, "the configured lr, not the scheduler's start"


def test_a_step_after_the_last_checkpoint_is_checked_at_the_end_of_fit(tmp_path, fmnist_dir):
    """fast_dev_run writes no checkpoint at all: only the end-of-fit check stands in the way."""
    args = [*AE, "trainer.fast_dev_run=true", "module.optimizer.lr=1e30"]
    out = run_forked("ldmlab.commands.train", args, tmp_path)
    assert_diverged(out, tmp_path, "train_ae", "module.optimizer.lr", None)
