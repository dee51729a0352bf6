"""A stored config never downloads, writes or compiles: every allow-listed class whose constructor
takes an argument that would is neutralised by ``READ_ONLY_ARGUMENTS`` (issue 23 §1), so a class
added to the allow-list later with such an argument fails here until it is."""

from __future__ import annotations

import importlib
import inspect

import pytest

from ldmlab.checkpoints import ARCHITECTURE_TARGETS, READ_ONLY_ARGUMENTS, instantiate_stored

SIDE_EFFECTS = {"download", "latent_cache", "compile", "cache", "cache_dir", "cache_root", "save_dir",
                "out", "out_dir", "output_dir", "overwrite"}


def constructor_arguments(target: str) -> set[str]:
    module, name = target.rsplit(".", 1)
    return set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)


@pytest.mark.parametrize("target", sorted(ARCHITECTURE_TARGETS))
def test_side_effect_arguments_are_forced_off(target):
    risky = constructor_arguments(target) & SIDE_EFFECTS
    assert risky <= set(READ_ONLY_ARGUMENTS.get(target, {})), \
        f"{target} takes {sorted(risky)}: add them to READ_ONLY_ARGUMENTS"


def test_read_only_arguments_name_real_arguments():
    for target, forced in READ_ONLY_ARGUMENTS.items():
        assert target in ARCHITECTURE_TARGETS and set(forced) <= constructor_arguments(target), target


def test_a_stored_download_is_forced_off(tmp_path):
    node = {"_target_": "ldmlab.data.torchvision_sets.TorchvisionDataModule", "name": "MNIST",
            "root": str(tmp_path), "download": True}
    assert instantiate_stored(node, "f.ckpt", "ckpt").download is False
    assert node["download"] is True  # the caller's node is left as read
