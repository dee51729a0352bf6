"""Shared fixtures: the real Fashion-MNIST files, Hydra composition, CLI runs in a temp log dir."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ldmlab.config import part_keys
from ldmlab.data.fetch_fashion_mnist import fetch, is_complete

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")
DATA_DIR = REPO / "data" / "fashion-mnist"

# In-process tests use one thread: tiny ops on 2 busy cores are slowed by OpenMP spin-waits.
torch.set_num_threads(1)
part_keys.install()  # errors of reusable parts name ldmlab's config keys, as in the commands


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same global RNG state."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """The real Fashion-MNIST idx files (``make data`` puts them there; fetched if missing)."""
    if not is_complete(DATA_DIR):
        fetch(DATA_DIR)
    return DATA_DIR


def compose_config(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose a config exactly as the CLI would (with the hydra node, resolvable paths)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name, overrides=overrides or [], return_hydra_config=True)


def run_cli(
    module: str, args: list[str], log_dir: Path, config_name: str | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> [--config-name N] <args>`` from the repo root, logs under ``log_dir``."""
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore", WANDB_SILENT="true",
               OMP_NUM_THREADS="1")  # tiny CLI runs: 1 thread avoids OpenMP spin-waits on busy cores
    flags = ["--config-name", config_name] if config_name else []
    flags += [a for a in args if a in ("-m", "--multirun")]  # argparse wants flags first
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    cmd = [sys.executable, "-m", module, *flags, f"paths.log_dir={log_dir}",
           f"paths.data_dir={REPO / 'data'}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


ENTRY_CONFIG = {"ldmlab.commands.train": "train_ae", "ldmlab.commands.sample": "sample",
                "ldmlab.commands.evaluate": "evaluate", "ldmlab.commands.invert": "invert",
                "ldmlab.commands.interpolate": "interpolate", "ldmlab.commands.export": "export",
                "ldmlab.commands.report": "report"}


def run_forked(
    module: str, args: list[str], log_dir: Path, config_name: str | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``run_cli`` without the interpreter start and imports (~6 s each): a fork of this process
    runs ``<module>.main`` (Hydra under the error contract) with the same argv and environment,
    its own fds 1/2 and Python's default warning display; returns its exit status, stdout, stderr."""
    main = importlib.import_module(module).main
    flags = ["--config-name", config_name] if config_name else []
    argv = [module, *flags, f"paths.log_dir={log_dir}", f"paths.data_dir={REPO / 'data'}", *args]
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            code = 1
            try:
                for fd, path in ((1, out), (2, err)):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
                os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
                warnings.resetwarnings()  # the interpreter's defaults, not pytest's recording
                for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                    warnings.simplefilter("ignore", hidden)
                warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
                    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
                sys.argv = argv
                try:
                    main()
                    code = 0
                except SystemExit as stop:
                    code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
                except BaseException:  # noqa: BLE001 - report like the interpreter does
                    traceback.print_exc()
            finally:
                sys.stdout.flush(), sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + timeout
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                done = os.waitpid(pid, 0)
                break
            time.sleep(0.05)
        code = os.waitstatus_to_exitcode(done[1])
        return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())


TINY_AE = [
    "data.train_subset=64", "data.val_subset=32", "data.batch_size=16",
    "autoencoder.encoder.ch=16", "loss.discriminator.base_channels=16", "logger=none",
    "callbacks.reconstruction_fid=null",
]
TINY_LDM = [
    "data.train_subset=64", "data.val_subset=32", "data.batch_size=16",
    "backbone.model_channels=16", "backbone.num_res_blocks=1", "backbone.num_heads=2",
    "conditioner_context_dim=32",
    "trainer.max_epochs=1", "module.warmup_steps=0", "callbacks.image_logger.num_images=10",
]
TINY_DIT = [  # TINY_LDM's run with a 2-block DiT conditioned DiT's way (a label table added to t's embedding)
    "data.train_subset=64", "data.val_subset=32", "data.batch_size=16",
    "backbone=dit", "conditioner=class_vector", "backbone.hidden_size=32", "backbone.depth=2",
    "backbone.num_heads=2", "trainer.max_epochs=1", "module.warmup_steps=0",
    "callbacks.image_logger.num_images=10",
]


def shared_dir(tmp_path_factory, name: str, build) -> Path:
    """A directory built once per test session by ``build(path)``, shared by every pytest-xdist
    worker (the first to take the lock builds it; the others wait and reuse it)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' common base temp dir
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            path.mkdir(exist_ok=True)
            build(path)
            done.touch()
    return path


def _train(config_name: str, args: list[str]):
    def build(log_dir: Path) -> None:
        out = run_cli("ldmlab.commands.train", args, log_dir, config_name=config_name)
        assert out.returncode == 0, out.stderr[-3000:]
    return build


@pytest.fixture(scope="session")
def tiny_ae_ckpt(tmp_path_factory, fmnist_dir) -> Path:
    """A real (tiny, 1-epoch) stage-1 checkpoint trained through the CLI."""
    log_dir = shared_dir(tmp_path_factory, "ae_logs", _train("train_ae", ["trainer.max_epochs=1", *TINY_AE]))
    return next(log_dir.glob("train_ae/runs/*/checkpoints/last.ckpt"))


@pytest.fixture(scope="session")
def tiny_ldm_run(tmp_path_factory, tiny_ae_ckpt) -> Path:
    """A real (tiny, 1-epoch) class-conditional stage-2 run; returns its log dir."""
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", "logger=csv", *TINY_LDM]
    return shared_dir(tmp_path_factory, "ldm_logs", _train("train_ldm", args))


TINY_NOISY_CLASSIFIER = [
    "data.train_subset=64", "data.val_subset=32", "data.batch_size=16", "trainer.max_epochs=1",
    "noisy_classifier.model_channels=16", "noisy_classifier.num_heads=2", "noisy_classifier.pool_heads=2",
    "logger=none",
]


@pytest.fixture(scope="session")
def tiny_noisy_classifier_run(tmp_path_factory, tiny_ae_ckpt) -> Path:
    """A real (tiny, 1-epoch) noisy-latent classifier on the tiny first stage; returns its run dir."""
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", *TINY_NOISY_CLASSIFIER]
    log_dir = shared_dir(tmp_path_factory, "noisy_classifier_logs", _train("train_noisy_classifier", args))
    return (log_dir / "train_noisy_classifier" / "latest").resolve()
