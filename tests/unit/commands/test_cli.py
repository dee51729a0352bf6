"""The error contract of ldmlab.commands.cli: which errors become one line, and that their fixes run."""

from __future__ import annotations

import sys

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ldmlab.commands.cli import closest_key, describe_hydra_error, fail, user_error
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config


def _hydra_error(config_name: str, overrides: list[str]) -> Exception:
    with pytest.raises(Exception) as info:
        compose_config(config_name, overrides)
    return info.value


def test_typo_suggests_the_real_key_and_the_fix_composes(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train", "trainer.max_epoch=3"])
    message = describe_hydra_error(_hydra_error("train_ae", ["trainer.max_epoch=3"]), "train_ae")
    assert message.startswith("trainer.max_epoch: no such config key")
    fix = message.split("did you mean ")[1].rstrip("?")
    assert fix == "trainer.max_epochs=3"
    assert compose_config("train_ae", [fix]).trainer.max_epochs == 3


def test_unknown_option_lists_the_options_and_the_fix_composes():
    message = describe_hydra_error(_hydra_error("train_ldm", ["sampler=dddim"]), "train_ldm")
    assert "ddim, ddpm, dpmpp" in message and "\n" not in message
    fix = message.split("e.g. ")[1]
    assert fix == "sampler=ddim"
    assert compose_config("train_ldm", [fix]).sampler._target_.endswith("DDIMSampler")


def test_unexpected_keyword_is_a_user_error_naming_the_node():
    cfg = compose_config("train_ldm", ["+backbone.not_an_arg=1"])
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.backbone)
    err = user_error(info.value)
    assert isinstance(err, ConfigError) and err.key == "backbone.not_an_arg"
    assert err.fix.startswith("drop it with ~backbone.not_an_arg")


class _Broken:
    def __init__(self, size: int) -> None:
        raise TypeError("a bug inside the constructor")


def test_type_error_inside_a_constructor_stays_a_bug():
    with pytest.raises(InstantiationException) as info:
        instantiate({"_target_": f"{__name__}._Broken", "size": 1})
    assert user_error(info.value) is None


def test_library_value_errors_are_not_swallowed():
    assert user_error(ValueError("some library")) is None
    assert user_error(FileNotFoundError("x")) is None


def test_fail_prints_exactly_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        fail("key: a\nmulti-line\tproblem. Fix: key=1")
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: key: a multi-line problem. Fix: key=1\n"


def test_a_new_argument_of_an_existing_node_is_not_taken_for_a_misspelt_sibling():
    """Was: ``module.optimizer.betas=[0.5,0.6]`` (not in the shipped config) suggested
    ``module.optimizer=[0.5,0.6]`` (its own node), a fix that fails again."""
    keys = ["seed", "module", "module.optimizer", "module.optimizer.lr", "module.optimizer.fused",
            "trainer", "trainer.max_steps"]
    assert closest_key("module.optimizer.betas", keys) is None
    assert closest_key("trainer.max_step", keys) == "trainer.max_steps"
    assert closest_key("modul.optimizer.lr", keys) == "module.optimizer.lr"
    assert closest_key("sed", keys) == "seed"
