"""A run stopped by SIGTERM (a cluster's pre-emption) still writes ``summary.json`` (status
"interrupted", its last validation metrics), exits non-zero, leaves ``latest`` alone and stays
resumable with ``ckpt_path=last``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ldmlab.commands.train import resolve_resume
from tests.conftest import REPO, TINY_AE


def test_sigterm_writes_an_interrupted_summary(tmp_path, fmnist_dir):
    args = [*TINY_AE, "trainer.max_epochs=1000", "callbacks.image_logger=null"]
    cmd = [sys.executable, "-m", "ldmlab.commands.train", f"paths.log_dir={tmp_path}",
           f"paths.data_dir={REPO / 'data'}", *args]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    run = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("train_ae/runs/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read()[-3000:]
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    run = next(tmp_path.glob("train_ae/runs/*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "val/lpips" in summary["metrics"]
    assert not (tmp_path / "train_ae" / "latest").exists()
    last = run / summary["checkpoints"]["last"]  # relative to the run dir
    assert resolve_resume("last", "train_ae", tmp_path / "train_ae").path == str(last)
