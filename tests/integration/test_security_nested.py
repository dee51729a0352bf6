"""Stored configs that name checkpoints (issue 23 §1): a stage-2 checkpoint whose semantic first
stage is the checkpoint itself recursed until the kernel killed it at 23 GB.

Cycles (A → A, A → B → A, also through a hard link), chains deeper than ``MAX_NESTING`` (of files,
or of first-stage architectures nested in one file) and a stored config that contains itself are
refused with one line naming the key, in a subprocess held to a memory and time bound so that a
regression cannot eat the machine. A stored config never downloads, writes or compiles.
"""

from __future__ import annotations

import copy
import os
import re
import resource
import subprocess
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException

from ldmlab.checkpoints import CONFIG_KEY, FIRST_STAGE_CONFIG, MAX_CONFIG_DEPTH, MAX_NESTING, check_targets
from ldmlab.models.restore import load_ldm, stored_datamodule
from ldmlab.utils.errors import ConfigError
from tests.conftest import run_forked
from tests.integration.test_security import LDM, TINY_EVAL, legit  # noqa: F401 - the fixture

SEMANTIC = "ldmlab.semantic.first_stage.SemanticFirstStage"
MEMORY_BOUND = 3 << 30  # bytes of address space beyond the parent's: a refusal needs far less
TIME_BOUND = 120  # seconds; a refusal takes a few


def semantic_over(target: str | Path) -> dict:
    """A semantic first stage that reads ``target`` (the stored ``ckpt`` of first_stage=semantic)."""
    return {"_target_": SEMANTIC, "ckpt": str(target), "resolution": 32, "expected_embed_dim": 4}


def stage2(legit: dict, path: Path, first_stage: dict, architecture: dict | None = None) -> Path:  # noqa: F811
    """The legit tiny stage-2 checkpoint with ``first_stage`` as its module's first stage and
    ``architecture`` as its stored first-stage architecture (None: built by reading its ckpt)."""
    checkpoint = copy.deepcopy(legit["ldm_checkpoint"])
    checkpoint[CONFIG_KEY]["module"]["first_stage"] = first_stage
    checkpoint[FIRST_STAGE_CONFIG] = architecture
    torch.save(checkpoint, path)
    return path


def bounded_run(module: str, args: list[str], tmp_path: Path, config_name: str | None = None):
    """``python -m <module> <args>`` (forked) with its address space and run time bounded."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) << 10 for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + MEMORY_BOUND, hard))  # the fork inherits it
    try:
        return run_forked(module, args, tmp_path, config_name=config_name, timeout=TIME_BOUND)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def bounded_sample(ckpt: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return bounded_run("ldmlab.commands.sample", [f"ckpt={ckpt}"], tmp_path)


def refusal(load, path: Path) -> str:
    """The message of the ``ConfigError`` that ``load(path)`` raises (unwrapped from Hydra's
    ``InstantiationException`` when raised while building a stored node, as the CLI does)."""
    with pytest.raises((ConfigError, InstantiationException)) as raised:
        load(path)
    error = raised.value
    while isinstance(error, InstantiationException):
        error = error.__cause__
    assert isinstance(error, ConfigError), raised.value
    return str(error)


def assert_one_line(out: subprocess.CompletedProcess, *names: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and sum(line.startswith("error:") for line in lines) == 1, \
        out.stderr[-3000:]
    for name in names:
        assert name in lines[-1], f"{name!r} not in {lines[-1]!r}"
    return lines[-1]


def test_checkpoint_whose_first_stage_is_itself_is_refused(legit, tmp_path):  # noqa: F811
    path = tmp_path / "self.ckpt"
    stage2(legit, path, semantic_over(path))
    line = assert_one_line(bounded_sample(path, tmp_path), "error: ckpt:", "builds from itself")
    assert f"{path} → {path}" in line


def test_two_checkpoints_naming_each_other_are_refused(legit, tmp_path):  # noqa: F811
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    stage2(legit, a, semantic_over(b))
    stage2(legit, b, semantic_over(a))
    line = assert_one_line(bounded_sample(a, tmp_path), "error: ckpt:", "builds from itself")
    assert f"{a} → {b} → {a}" in line


def test_a_cycle_through_a_hard_link_is_refused(legit, tmp_path):  # noqa: F811
    """Compared as files (device, inode), not as names."""
    path, link = tmp_path / "a.ckpt", tmp_path / "link.ckpt"
    stage2(legit, path, semantic_over(link))
    os.link(path, link)
    assert_one_line(bounded_sample(path, tmp_path), "error: ckpt:", "builds from itself", f"{path} → {link}")


def test_stage1_checkpoint_whose_vae_prior_is_itself_is_refused(legit, tmp_path):  # noqa: F811
    """Another file-naming class, another key: a stage-1 config naming a VAE prior (generator_ckpt)
    on its own file, given to train_ldm as first_stage.ckpt."""
    path = tmp_path / "ae.ckpt"
    checkpoint = copy.deepcopy(legit["ae_checkpoint"])
    prior = {"_target_": "ldmlab.autoencoder.prior.VAEPrior", "ckpt": str(path), "resolution": 32}
    checkpoint[CONFIG_KEY]["autoencoder"] = prior | {"channels": 1}
    torch.save(checkpoint, path)
    out = bounded_run("ldmlab.commands.train", [*LDM, f"first_stage.ckpt={path}"], tmp_path,
                      config_name="train_ldm")
    assert_one_line(out, "error: first_stage.ckpt:", "builds from itself", f"{path} → {path}")


def test_a_chain_of_checkpoints_deeper_than_the_bound_is_refused(legit, tmp_path):  # noqa: F811
    files = [tmp_path / f"level{i}.ckpt" for i in range(MAX_NESTING + 2)]
    for here, below in zip(files, files[1:], strict=False):
        stage2(legit, here, semantic_over(below))
    stage2(legit, files[-1], semantic_over(files[0]))  # never reached
    assert_one_line(bounded_sample(files[0], tmp_path), "error: ckpt:", f"more than {MAX_NESTING} deep")


def test_architectures_nested_in_one_file_deeper_than_the_bound_are_refused(legit, tmp_path):  # noqa: F811
    """No file read: each stored first-stage architecture holds another, MAX_NESTING + 2 deep."""
    module = {k: v for k, v in legit["ldm_checkpoint"][CONFIG_KEY]["module"].items() if k != "optimizer"}
    architecture = legit["ldm_checkpoint"][FIRST_STAGE_CONFIG]
    semantic = {k: v for k, v in semantic_over("unused").items() if k != "ckpt"} | {"ckpt": None}
    for _ in range(MAX_NESTING + 2):
        architecture = {"module": module | {"first_stage": semantic}, FIRST_STAGE_CONFIG: architecture}
    path = stage2(legit, tmp_path / "deep.ckpt", semantic, architecture)
    assert re.match(f"^ckpt: stored configs build .* more than {MAX_NESTING} deep", refusal(load_ldm, path))


def test_a_stored_config_that_contains_itself_is_refused(legit, tmp_path):  # noqa: F811
    """A pickle can hold a dict inside itself; weights_only=True rebuilds it."""
    checkpoint = copy.deepcopy(legit["ldm_checkpoint"])
    architecture = {"module": checkpoint[CONFIG_KEY]["module"]}
    architecture[FIRST_STAGE_CONFIG] = architecture
    checkpoint[FIRST_STAGE_CONFIG] = architecture
    path = tmp_path / "loop.ckpt"
    torch.save(checkpoint, path)
    assert re.match(f"^ckpt: .*nested more than {MAX_CONFIG_DEPTH} levels", refusal(load_ldm, path))


@pytest.mark.parametrize("target", [["a", "list"], {"a": "dict"}, 3])
def test_a_target_that_is_no_name_is_refused(target):
    with pytest.raises(ConfigError, match="^ckpt: f.ckpt stores _target_ .* not an allow-listed"):
        check_targets({"backbone": {"_target_": target}}, "f.ckpt", "ckpt")


def torchvision_data(root: Path) -> dict:
    return {"_target_": "ldmlab.data.torchvision_sets.TorchvisionDataModule", "name": "MNIST",
            "root": str(root), "download": True, "resolution": 32, "channels": 1, "batch_size": 10}


def test_stored_download_is_never_done(legit, tmp_path):  # noqa: F811
    """``download: true`` in a stored data config: evaluate's datamodule does not download (nor
    create ``root``); the missing data is one line."""
    checkpoint = copy.deepcopy(legit["ldm_checkpoint"])
    root = tmp_path / "torchvision"
    checkpoint[CONFIG_KEY]["data"] = torchvision_data(root)
    path = tmp_path / "download.ckpt"
    torch.save(checkpoint, path)
    assert stored_datamodule(path).download is False
    out = run_forked("ldmlab.commands.evaluate", [f"ckpt={path}", *TINY_EVAL, "metrics.inception=false"],
                     tmp_path)
    assert_one_line(out, "error: data.root:", "MNIST not found")
    assert not root.exists(), "a stored config wrote (or downloaded) data"


def test_stored_latent_cache_and_compile_are_dropped(legit, tmp_path):  # noqa: F811
    """A restored module writes no latent cache and compiles nothing, whatever its config says."""
    checkpoint = copy.deepcopy(legit["ldm_checkpoint"])
    checkpoint[CONFIG_KEY]["module"] |= {"latent_cache": str(tmp_path / "cache"), "compile": True}
    torch.save(checkpoint, tmp_path / "compiled.ckpt")
    module = load_ldm(tmp_path / "compiled.ckpt")
    assert module.latent_cache_dir is None
    assert module.model["backbone"]._compiled_call_impl is None
