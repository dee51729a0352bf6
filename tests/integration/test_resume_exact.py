"""Kill -9 after a mid-epoch checkpoint, resume with ``ckpt_path=last``: the final weights, EMA,
discriminator (incl. BatchNorm statistics), optimiser and LR-scheduler states equal the
uninterrupted run's exactly (max abs difference 0.0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY_AE, TINY_DIT, TINY_LDM, run_cli, run_forked

BATCHES = 5  # per epoch and rank; 3 epochs; last.ckpt every 3 optimiser steps
COMMON = ["trainer.max_epochs=3", "callbacks.last_checkpoint.every_n_train_steps=3", "logger=none",
          "data.batch_size=16"]
AE = [*TINY_AE, f"data.train_subset={16 * BATCHES}", "loss.disc_start=2", *COMMON]
LDM = [*TINY_LDM, f"data.train_subset={16 * BATCHES}", "callbacks.image_logger=null", *COMMON]
DIT = [*TINY_DIT, f"data.train_subset={16 * BATCHES}", "callbacks.image_logger=null", *COMMON]
CLASSIFIER = [f"data.train_subset={16 * BATCHES}", "data.val_subset=32", "classifier.widths=[8,16]",
              "classifier.groups=4", *COMMON]
DATA_KEY = "FashionMNISTDataModule"  # the datamodule's state: {"epoch", "samples" consumed}


def _command(config: str, args: list[str], log_dir: Path) -> tuple[list[str], dict]:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "ldmlab.commands.train", "--config-name", config, f"paths.log_dir={log_dir}",
           f"paths.data_dir={REPO / 'data'}", *args]
    return cmd, env


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _kill_after_mid_epoch_checkpoint(proc: subprocess.Popen, pattern: str, log_dir: Path) -> None:
    """SIGKILL the run's process group once its last.ckpt is mid-epoch in an epoch >= 1. Each new
    last.ckpt freezes the group (SIGSTOP) while it is read, so the run cannot move on meanwhile."""
    seen, deadline = None, time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        for path in log_dir.glob(pattern):
            try:
                stamp = (path.stat().st_ino, path.stat().st_mtime_ns)  # written by rename: new inode
            except FileNotFoundError:
                continue
            if stamp == seen:
                continue
            seen = stamp
            os.killpg(proc.pid, signal.SIGSTOP)
            state = _load(path)[DATA_KEY]
            if state["epoch"] >= 1 and state["samples"] > 0:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"no mid-epoch checkpoint before the run ended (rc={proc.returncode})")


def _max_abs_diff(a, b, where: str = "") -> float:
    """Max |a - b| over every tensor of two nested checkpoint parts; other leaves must be equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        if a.numel() == 0:
            return 0.0
        if not a.is_floating_point():
            return float((a != b).any())
        return (a.double() - b.double()).abs().max().item()
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: {set(a) ^ set(b)}"
        return max([_max_abs_diff(a[k], b[k], f"{where}/{k}") for k in a], default=0.0)
    if isinstance(a, list | tuple):
        assert len(a) == len(b), where
        pairs = enumerate(zip(a, b, strict=True))
        return max([_max_abs_diff(x, y, f"{where}[{i}]") for i, (x, y) in pairs], default=0.0)
    assert a == b, f"{where}: {a!r} != {b!r}"
    return 0.0


def _resume_matches(config: str, task: str, args: list[str], tmp_path: Path, ranks: int = 1) -> dict:
    """Run uninterrupted and killed in parallel, resume the killed one; return max abs diffs."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    cmd_a, env = _command(config, args, straight)
    cmd_b, _ = _command(config, args, broken)
    run_a = subprocess.Popen(cmd_a, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_b = subprocess.Popen(cmd_b, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    _kill_after_mid_epoch_checkpoint(run_b, f"{task}/runs/*/checkpoints/last.ckpt", broken)
    _, err = run_a.communicate(timeout=600)
    assert run_a.returncode == 0, err[-3000:].decode()
    final = _load(straight / task / "latest" / "checkpoints" / "last.ckpt")
    killed = _load(next(broken.glob(f"{task}/runs/*/checkpoints/last.ckpt")))
    position = killed[DATA_KEY]
    assert run_b.returncode == -signal.SIGKILL and not list(broken.glob(f"{task}/latest"))
    assert 0 < killed["global_step"] < final["global_step"]
    assert position["epoch"] >= 1 and 0 < position["samples"] < BATCHES * 16 * ranks, position

    resume = run_cli if ranks > 1 else run_forked  # a fork of this 1-thread process: no interpreter start
    resumed = resume("ldmlab.commands.train", ["ckpt_path=last", *args], broken, config_name=config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = _load(broken / task / "latest" / "checkpoints" / "last.ckpt")
    assert again["global_step"] == final["global_step"]
    parts = {part: (final[part], again[part]) for part in ("state_dict", "optimizer_states", "lr_schedulers")}
    for key in (k for k in final["callbacks"] if k.startswith("RNGState")):
        assert len(final["callbacks"][key]["ranks"]) == ranks
        parts["rng_states"] = final["callbacks"][key], again["callbacks"][key]
    parts["data_position"] = final[DATA_KEY], again[DATA_KEY]
    return {part: _max_abs_diff(a, b, part) for part, (a, b) in parts.items()}


def test_autoencoder_resumes_exactly(tmp_path, fmnist_dir):
    diffs = _resume_matches("train_ae", "train_ae", AE, tmp_path)
    assert diffs == dict.fromkeys(diffs, 0.0), diffs


@pytest.mark.parametrize("args", [
    LDM, pytest.param(DIT, marks=pytest.mark.slow), [*LDM, "diffusion/objective=flow"],
    pytest.param([*LDM, "diffusion/objective=edm"], marks=pytest.mark.slow), [*LDM, "data.random_flip=true"],
], ids=["unet", "dit", "flow", "edm", "flip"])
def test_ldm_resumes_exactly(args, tmp_path, tiny_ae_ckpt):
    """The DiT case (~35 s) is slow: the fast DiT stop-and-extend case below covers its resume. Flow
    matching draws continuous levels (logit-normal); EDM (slow) shares that path. ``flip``: the
    latent cache serves each sample the view its seed draws."""
    diffs = _resume_matches("train_ldm", "train_ldm", [f"first_stage.ckpt={tiny_ae_ckpt}", *args], tmp_path)
    assert diffs == dict.fromkeys(diffs, 0.0), diffs


def test_ldm_resumes_exactly_under_two_rank_ddp(tmp_path, tiny_ae_ckpt):
    args = ["trainer=ddp_cpu", f"first_stage.ckpt={tiny_ae_ckpt}", *LDM,
            f"data.train_subset={2 * 16 * BATCHES}"]
    diffs = _resume_matches("train_ldm", "train_ldm", args, tmp_path, ranks=2)
    assert diffs == dict.fromkeys(diffs, 0.0), diffs


def test_classifier_resumes_exactly(tmp_path, fmnist_dir):
    diffs = _resume_matches("train_classifier", "train_classifier", CLASSIFIER, tmp_path)
    assert diffs == dict.fromkeys(diffs, 0.0), diffs


@pytest.mark.parametrize("case", ["classifier", "dit"])
def test_extending_a_run_stopped_mid_epoch_continues_that_epoch_exactly(case, tmp_path, request):
    """max_steps=7 stops after 2 of epoch 1's 5 batches; resumed with max_steps=12 it ends where an
    uninterrupted 12-step run ends (no LR schedule over max_steps: the classifier's OneCycleLR is
    planned over it and switched off; the LDM's is a warmup of fixed length)."""
    if case == "classifier":
        task, args = "train_classifier", [*CLASSIFIER, "module.scheduler=null"]
    else:
        task, args = "train_ldm", [f"first_stage.ckpt={request.getfixturevalue('tiny_ae_ckpt')}", *DIT]
    args = [*args, "trainer.max_epochs=10"]

    def train(log_dir: Path, *extra: str) -> dict:
        out = run_forked("ldmlab.commands.train", [*args, *extra], log_dir, config_name=task)
        assert out.returncode == 0, out.stderr[-3000:]
        return _load(log_dir / task / "latest" / "checkpoints" / "last.ckpt")

    final = train(tmp_path / "straight", "trainer.max_steps=12")
    stopped = train(tmp_path / "extended", "trainer.max_steps=7")
    assert stopped[DATA_KEY]["epoch"] == 1 and stopped[DATA_KEY]["samples"] == 2 * 16
    again = train(tmp_path / "extended", "trainer.max_steps=12", "ckpt_path=last")
    assert final["global_step"] == again["global_step"] == 12 and final[DATA_KEY] == again[DATA_KEY]
    parts = {part: _max_abs_diff(final[part], again[part], part)
             for part in ("state_dict", "optimizer_states", DATA_KEY)}
    assert parts == dict.fromkeys(parts, 0.0), parts
    changed = _max_abs_diff(stopped["state_dict"], final["state_dict"])
    assert changed > 0  # the 5 steps after the stop moved the weights: the equality is not vacuous
