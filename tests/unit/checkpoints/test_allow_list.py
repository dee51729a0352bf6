"""``ARCHITECTURE_TARGETS`` matches the configs: every class a stored architecture or data config
can name is allow-listed (so real checkpoints load), and every allow-listed name is a real class."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from ldmlab.checkpoints import ARCHITECTURE_TARGETS, check_targets
from ldmlab.utils.errors import ConfigError
from tests.conftest import CONF_DIR

# The groups whose nodes end up in the configs that checkpoints are rebuilt from.
GROUPS = ("autoencoder", "backbone", "conditioner", "diffusion", "sampler", "data", "first_stage")
TRAINING_ONLY = ("autoencoder/loss",)  # stage 1's loss: built by train_ae only, never from a checkpoint
# Stage-2 module targets stored in every train_ldm checkpoint (module node without the optimizer).
MODULE_TARGETS = {"ldmlab.models.ldm.LatentDiffusionModule", "ldmlab.diffusion.loss.DiffusionLoss"}


def targets_in(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["_target_"]} if "_target_" in node else set()
        return found.union(*(targets_in(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(targets_in(v) for v in node))
    return set()


def group_targets() -> set[str]:
    files = [f for group in GROUPS for f in sorted((Path(CONF_DIR) / group).rglob("*.yaml"))
             if not any(f.is_relative_to(Path(CONF_DIR) / skip) for skip in TRAINING_ONLY)]
    assert len(files) > 20
    return set().union(*(targets_in(yaml.safe_load(f.read_text())) for f in files))


def test_every_architecture_and_data_target_is_allow_listed() -> None:
    targets = group_targets() | MODULE_TARGETS
    assert not targets - ARCHITECTURE_TARGETS, f"not allow-listed: {sorted(targets - ARCHITECTURE_TARGETS)}"


@pytest.mark.parametrize("name", sorted(ARCHITECTURE_TARGETS))
def test_every_allow_listed_name_is_an_ldmlab_class(name: str) -> None:
    module, _, attribute = name.rpartition(".")
    found = getattr(importlib.import_module(module), attribute)
    assert inspect.isclass(found) and found.__module__ == module


@pytest.mark.parametrize("node", [
    {"_target_": "ldmlab.backbones.unet.UNet", "channel_mult": [1, 2], "sub": {"_target_": "builtins.open"}},
    {"_target_": "ldmlab.backbones.unet.UNet", "model_channels": "${oc.env:HOME}"},
    {"_target_": "ldmlab.backbones.unet.UNet", "__class__": 1},
    {"_target_": "ldmlab.backbones.unet.UNet", "weights": b"bytes"},
], ids=["nested-target", "interpolation", "dunder-key", "non-yaml-leaf"])
def test_check_targets_refuses_code_and_non_data(node) -> None:
    with pytest.raises(ConfigError, match=r"^ckpt: x.ckpt stores"):
        check_targets(node, "x.ckpt", "ckpt")
