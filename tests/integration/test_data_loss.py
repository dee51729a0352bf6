"""No data lost by the real entry points: a disk-full checkpoint save keeps the previous checkpoint
and leaves no temporary file; a copied run dir works without the original; a real folder named
``latest`` is never replaced, and commands that would read it stop with one line."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from tests.conftest import TINY_AE, run_forked

AE = [*TINY_AE, "data.train_subset=32", "logger=none"]


def one_error_line(out, key: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith(f"error: {key}: "), lines[0]
    return lines[0]


def test_disk_full_during_a_checkpoint_save_keeps_the_previous_one(tmp_path, fmnist_dir, monkeypatch) -> None:
    written = TorchCheckpointIO.save_checkpoint

    def fills_the_disk(self, checkpoint, path, storage_options=None):
        assert f".tmp-{os.getpid()}-" in Path(path).name  # a temporary name of this process only
        if checkpoint["epoch"] == 0:
            return written(self, checkpoint, path, storage_options)
        Path(path).write_bytes(b"the first bytes of a checkpoint")  # then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", fills_the_disk)  # inherited by the fork
    out = run_forked("ldmlab.commands.train", [*AE, "trainer.max_epochs=2"], tmp_path)
    line = one_error_line(out, "paths.log_dir")
    assert "no space left on the device writing" in line and "Traceback" not in out.stderr
    folder = next(tmp_path.glob("train_ae/runs/*/checkpoints"))
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary file
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] > 0  # the previous checkpoint, intact


def test_a_copied_run_dir_resumes_and_samples_without_the_original(tmp_path, fmnist_dir, tiny_ldm_run):
    original = tmp_path / "original"
    (original / "train_ae" / "latest").mkdir(parents=True)  # a folder of the user's named latest
    (original / "train_ae" / "latest" / "notes.txt").write_text("mine")
    out = run_forked("ldmlab.commands.train", [*AE, "trainer.max_epochs=1"], original)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "not ldmlab's link to the newest run" in out.stdout + out.stderr
    assert (original / "train_ae" / "latest" / "notes.txt").read_text() == "mine"  # kept, not replaced
    run = next(original.glob("train_ae/runs/*"))
    assert str(original) not in (run / "summary.json").read_text()
    copy = shutil.copytree(run, tmp_path / "copied_run", symlinks=True)
    shutil.rmtree(original)

    resume = f"ckpt_path={copy / 'checkpoints' / 'last.ckpt'}"
    resumed = run_forked("ldmlab.commands.train", [*AE, "trainer.max_epochs=2", resume], tmp_path / "more")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "more" / "train_ae" / "latest" / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["checkpoints"]["last"] == "checkpoints/last.ckpt"

    ldm = shutil.copytree((tiny_ldm_run / "train_ldm" / "latest").resolve(), tmp_path / "ldm_copy")
    old_style = json.loads((ldm / "summary.json").read_text())  # as written before run-relative paths
    gone = tmp_path / "deleted" / "runs" / "A"
    old_style |= {"run_dir": str(gone), "checkpoints": {"last": str(gone / "checkpoints" / "last.ckpt")}}
    (ldm / "summary.json").write_text(json.dumps(old_style))
    sampled = run_forked("ldmlab.commands.sample", [f"ckpt={ldm}", "num_samples=2", "sampler.steps=2"],
                         tmp_path / "s")
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    sample_run = (tmp_path / "s" / "sample" / "latest").resolve()
    files = json.loads((sample_run / "summary.json").read_text())["files"]
    assert np.load(sample_run / files["npz"])["images"].shape[0] == 2


def test_latest_that_is_a_folder_is_one_line_for_readers(tmp_path, tiny_ldm_run) -> None:
    logs = shutil.copytree(tiny_ldm_run, tmp_path / "logs", symlinks=True)
    latest = logs / "train_ldm" / "latest"
    latest.unlink()
    latest.mkdir()  # e.g. a copy made with `cp -rL`, or a folder the user made
    out = run_forked("ldmlab.commands.sample", ["num_samples=2", "sampler.steps=2"], logs)
    line = one_error_line(out, "ckpt")
    assert f"{latest} is a folder" in line
    fixed = run_forked("ldmlab.commands.sample", ["num_samples=2", "sampler.steps=2", line.split("Fix: ")[1]],
                       logs)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert latest.is_dir() and not latest.is_symlink()


def test_a_run_dir_that_holds_files_is_refused_before_anything_is_written_there(tmp_path) -> None:
    """``hydra.run.dir`` / ``hydra.sweep.dir`` at a folder that holds files (the user's, or another
    run's): one line, nothing in it replaced or added; the fix (a free folder) gets past it."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "samples.png").write_bytes(b"my own picture")
    missing = f"ckpt={tmp_path / 'missing.ckpt'}"
    out = run_forked("ldmlab.commands.sample", [f"hydra.run.dir={mine}", missing], tmp_path)
    line = one_error_line(out, "hydra.run.dir")
    assert [p.name for p in mine.iterdir()] == ["samples.png"]
    assert (mine / "samples.png").read_bytes() == b"my own picture"
    fix = line.rsplit("Fix: ", 1)[1]
    assert fix == f"hydra.run.dir={tmp_path / 'mine_2'}"
    one_error_line(run_forked("ldmlab.commands.sample", [fix, missing], tmp_path), "ckpt")  # past it
    out = run_forked("ldmlab.commands.report", ["hydra.mode=MULTIRUN", f"hydra.sweep.dir={mine}",
                                       f"sweep_dir={tmp_path / 'none'}"], tmp_path)
    one_error_line(out, "hydra.sweep.dir")
    assert [p.name for p in mine.iterdir()] == ["samples.png"]
