"""A regular (non-editable) install: conf/ ships inside the package (ldmlab/conf), and the commands and
console scripts compose their configs from that copy, from a working directory outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --target`` of a copy of the sources (pip builds in the tree it is given)."""
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("installed")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=skip)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target"]
    done = subprocess.run([*pip, str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def run_installed(target: Path, cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_every_config(installed) -> None:
    shipped = installed / "ldmlab" / "conf"
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*.yaml")) == \
        sorted(p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml"))
    assert not shipped.is_symlink()


def test_installed_commands_compose_the_installed_configs(installed, tmp_path) -> None:
    where = run_installed(installed, tmp_path, sys.executable, "-c",
                          "import ldmlab.config.conf_dir as c; print(c.__file__); print(c.CONF_DIR)")
    assert where.returncode == 0, where.stderr[-3000:]
    module, conf_dir = where.stdout.split()
    assert Path(module).is_relative_to(installed) and Path(conf_dir) == installed / "ldmlab" / "conf"

    job = run_installed(installed, tmp_path, sys.executable, "-m", "ldmlab.commands.train",
                        "--config-name", "train_ldm", "--cfg", "job")
    assert job.returncode == 0, job.stderr[-3000:]
    assert "task_name: train_ldm" in job.stdout
    search = run_installed(installed, tmp_path, sys.executable, "-m", "ldmlab.commands.train", "--info",
                           "searchpath")
    assert f"file://{installed / 'ldmlab' / 'conf'}" in search.stdout, search.stdout

    script = str(installed / "bin" / "ldmlab-train")
    helped = run_installed(installed, tmp_path, script, "--help")
    assert helped.returncode == 0 and "train is powered by Hydra" in helped.stdout, helped.stderr[-3000:]
    composed = run_installed(installed, tmp_path, script, "--config-name", "train_ae", "--cfg", "job")
    assert composed.returncode == 0 and "task_name: train_ae" in composed.stdout, composed.stderr[-3000:]
    refused = run_installed(installed, tmp_path, script, "trainer.max_epoch=1")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: trainer.max_epoch: no such config key"), refused.stderr[-3000:]
    for name in ("sample", "evaluate", "invert", "interpolate", "export", "report"):
        assert (installed / "bin" / f"ldmlab-{name}").is_file()
