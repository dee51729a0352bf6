"""README's cluster recipes, run as far as one machine allows: torchrun with 2 gloo ranks, srun's
environment for 2 tasks (what SLURM gives each task), and a multirun through the submitit
launcher (the local executor of the plugin that `hydra/launcher=slurm` uses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO, TINY_LDM, compose_config, run_cli

LDM = ["trainer=ddp_cpu", "logger=none", *TINY_LDM, "callbacks.image_logger=null",
       "module.scale_fit_batches=2"]


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", **extra)


def _train_args(log_dir, ae) -> list[str]:
    return ["--config-name", "train_ldm", f"paths.log_dir={log_dir}", f"paths.data_dir={REPO / 'data'}",
            f"first_stage.ckpt={ae}", *LDM]


def _one_run(log_dir, prefix: str) -> dict:
    (run,) = (log_dir / "train_ldm" / "runs").iterdir()  # every rank wrote into the same run dir
    assert run.name.startswith(prefix), run.name
    summary = json.loads((run / "summary.json").read_text())
    # 64 training images, batch 16, 2 ranks → 2 optimiser steps per epoch
    assert summary["status"] == "completed" and summary["global_step"] == 2
    return summary


def test_torchrun_two_ranks_share_one_run_dir(tmp_path, tiny_ae_ckpt):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ldmlab.commands.train", *_train_args(tmp_path, tiny_ae_ckpt)]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    _one_run(tmp_path, "torchrun-")


def _srun(cmd: list[str]) -> None:
    """Two processes with the variables srun sets for `--ntasks-per-node=2` (= trainer.devices)."""
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242",
             "SLURM_STEP_ID": "0", "SLURM_JOB_NAME": "ldm", "SLURM_NODELIST": "localhost"}
    tasks = [subprocess.Popen(cmd, cwd=REPO, env=_env(**slurm, SLURM_PROCID=str(r), SLURM_LOCALID=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for task in tasks:
        _, err = task.communicate(timeout=300)
        assert task.returncode == 0, err[-3000:]


def test_srun_tasks_share_one_run_dir_and_a_requeue_resumes_it(tmp_path, tiny_ae_ckpt):
    cmd = [sys.executable, "-m", "ldmlab.commands.train", *_train_args(tmp_path, tiny_ae_ckpt),
           "ckpt_path=auto"]
    _srun(cmd)  # first start: nothing to resume, a fresh run
    assert _one_run(tmp_path, "slurm-4242.0")["resumed_from"] is None
    _srun([*cmd, "trainer.max_epochs=2"])  # the requeued job: same job id, same run dir, resumed
    (path,) = (tmp_path / "train_ldm" / "runs").glob("*/summary.json")
    summary = json.loads(path.read_text())
    assert path.parent.name == "slurm-4242.0"
    assert summary["resumed_from"] == "checkpoints/last.ckpt"  # its own, recorded relative to the run dir
    assert summary["global_step"] == 4


def test_multirun_through_the_submitit_launcher(tmp_path, tiny_ae_ckpt):
    args = ["-m", "hydra/launcher=submitit_local", f"first_stage.ckpt={tiny_ae_ckpt}", "logger=none",
            *TINY_LDM, "callbacks.image_logger=null", "conditioner.p_uncond=0.1,0.2"]
    out = run_cli("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = (tmp_path / "train_ldm" / "multiruns").iterdir()
    for job in ("0", "1"):
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "completed"


def test_the_slurm_launcher_asks_for_one_task_per_device():
    cfg = compose_config("train_ldm", ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                                       "trainer.num_nodes=2", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
