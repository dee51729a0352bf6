"""Shared fixtures: the real Fashion-MNIST files, Hydra composition, CLI runs in a temp log dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ldmlab.data.fetch_fashion_mnist import fetch, is_complete

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")
DATA_DIR = REPO / "data" / "fashion-mnist"

# In-process tests use one thread: tiny ops on 2 busy cores are slowed by OpenMP spin-waits.
torch.set_num_threads(1)


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


def run_cli(module: str, args: list[str], log_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` from the repo root with logs under ``log_dir``."""
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore", WANDB_SILENT="true")
    cmd = [sys.executable, "-m", module, f"paths.log_dir={log_dir}", f"paths.data_dir={REPO / 'data'}", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
