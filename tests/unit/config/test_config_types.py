"""The type check every command runs first (``ldmlab.config.types``): no shipped config trips
it, every command key and every count is typed (so an unlisted key is checked too), and the
checks themselves (ints are not 1.5, counts are ≥ their bound, a fix is the shipped value)."""

from __future__ import annotations

import inspect
import re
import typing
from functools import cache
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ldmlab.config import settings
from ldmlab.config.types import (
    NOT_GIVEN,
    NonNegativeInt,
    PositiveInt,
    _target_of,
    accepts,
    check_config,
    describe,
    target_params,
)
from ldmlab.utils.device import resolve_device
from ldmlab.utils.errors import ConfigError
from tests.conftest import CONF_DIR, compose_config

TABLES = {"train_ae": settings.TrainSettings, "train_ldm": settings.TrainSettings,
          "train_classifier": settings.TrainSettings, "train_noisy_classifier": settings.TrainSettings,
          "sample": settings.SampleSettings, "evaluate": settings.EvaluateSettings,
          "invert": settings.InvertSettings, "interpolate": settings.InterpolateSettings,
          "export": settings.ExportSettings, "report": settings.ReportSettings}
EXPERIMENTS = sorted(p.stem for p in Path(CONF_DIR, "experiment").glob("*.yaml"))
GROUPS = [(g, p.stem) for g in ("conditioner", "first_stage", "backbone", "sampler", "data", "trainer",
                                 "callbacks") for p in sorted(Path(CONF_DIR, g).glob("*.yaml"))]
GUIDANCE = sorted(p.stem for p in Path(CONF_DIR, "guidance").glob("*.yaml"))
SHIPPED = ([(name, ()) for name in TABLES]
           + [("train_ae" if e.startswith("fmnist_") else "train_ldm", (f"experiment={e}",))
              for e in EXPERIMENTS])
VARIANTS = ([("train_ldm", (f"{g}={o}",)) for g, o in GROUPS if g != "callbacks" or o.startswith("ldm")]
            + [("evaluate", (f"guidance={g}",)) for g in GUIDANCE])
COUNT_NAME = re.compile(r"^(num_|n_)|(_size|_steps|_batches|_epochs|_channels|_dim|_images|_workers)$|"
                        r"^(batch_size|steps|nrow|frames|ch|heads|depth|size|resolution)$")


@cache
def _without_hydra_node(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    """The config a command composes (its paths resolvable without a running app); read-only."""
    cfg = compose_config(config_name, [*overrides, "data.root=/tmp"] if "data=image_folder" in overrides
                         else list(overrides))
    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    with_hydra.pop("hydra")
    with_hydra.setdefault("paths", {})["output_dir"] = "/tmp/out"
    cfg = OmegaConf.create(with_hydra)
    OmegaConf.set_readonly(cfg, True)
    return cfg


@pytest.mark.parametrize(("config_name", "overrides"),
                         SHIPPED + VARIANTS,
                         ids=lambda x: x if isinstance(x, str) else ",".join(x) or "-")
def test_every_shipped_config_passes(config_name, overrides):
    cfg = _without_hydra_node(config_name, overrides)
    check_config(cfg, TABLES[config_name], lambda key: OmegaConf.select(cfg, key, default=NOT_GIVEN))


def test_an_empty_string_is_refused_unless_it_is_the_shipped_value():
    """Was: ``paths.log_dir=''`` wrote runs under ``/sample/runs`` and ``data.root=''`` read the
    current directory's images."""
    cfg = OmegaConf.create({"paths": {"log_dir": ""}, "name": "", "ckpt": None})
    with pytest.raises(ConfigError, match=r"^paths.log_dir: is an empty string .* Fix: paths.log_dir=logs$"):
        check_config(cfg, settings.CommandSettings, lambda key: "logs" if "paths" in key else NOT_GIVEN)
    check_config(cfg, settings.CommandSettings, lambda key: "" if "paths" in key else NOT_GIVEN)
    with pytest.raises(ConfigError, match=r"^ckpt: is an empty string .* Fix: ckpt=null$"):
        check_config(OmegaConf.create({"ckpt": ""}), settings.SampleSettings)


@pytest.mark.parametrize("config_name", sorted(TABLES))
def test_every_command_key_is_in_its_table(config_name):
    """A key the command reads without a ``_target_`` has a type, so a new key cannot go unchecked."""
    table = typing.get_type_hints(TABLES[config_name], include_extras=True)
    cfg = _without_hydra_node(config_name, ())
    untyped = [key for key, value in cfg.items() if not isinstance(value, DictConfig) and key not in table]
    assert not untyped, f"add {untyped} to {TABLES[config_name].__name__} (ldmlab.config.settings)"


def test_every_count_of_ldmlab_is_typed_as_one():
    """Counts and sizes of ldmlab's targets say their bound (PositiveInt / NonNegativeInt)."""
    targets = set()

    def walk(node) -> None:
        if isinstance(node, DictConfig) and "_target_" in node:
            targets.add(_target_of(node))
        children = node.values() if isinstance(node, DictConfig) else node
        for value in children:
            if isinstance(value, DictConfig | ListConfig):
                walk(value)

    for config_name, overrides in SHIPPED + VARIANTS:
        walk(_without_hydra_node(config_name, overrides))
    plain = [f"{t.__module__}.{t.__qualname__}({name})" for t in targets if t is not None
             for name, (hint, _) in target_params(t).items()
             if COUNT_NAME.search(name) and hint in (int, int | None)
             and _defined_by(t, name).startswith("ldmlab.")]
    assert not plain, f"counts typed as a plain int: {plain}"


def _defined_by(target, name: str) -> str:
    """The module of the function (a class: the first ``__init__`` in its MRO) that takes ``name``."""
    functions = [c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__] \
        if inspect.isclass(target) else [target]
    return next(f.__module__ for f in functions if name in inspect.signature(f).parameters)


@pytest.mark.parametrize(("value", "hint", "ok"), [
    (3, int, True), (1.5, int, False), (True, int, False), ("abc", int, False), (2, float, True),
    (float("nan"), float, False), (float("inf"), float | None, False), (-float("inf"), float, False),
    (0, PositiveInt, False), (1, PositiveInt, True), (0, NonNegativeInt, True), (-1, NonNegativeInt, False),
    (None, PositiveInt | None, True), (1.5, NonNegativeInt | None, False), ("x", str | None, True),
    (OmegaConf.create([1, 2]), list[int], True), (OmegaConf.create([1, "a"]), list[int], False),
    (OmegaConf.create([0.9]), tuple[float, float], False), ("abc", float | torch.Tensor, False),
    ("warn", bool | typing.Literal["warn"] | None, True),
    ("foo", bool | typing.Literal["warn"] | None, False),
    ("/tmp/x", Path, True), ("cpu", torch.device, True), (OmegaConf.create({"a": 1}), torch.nn.Module, True),
])
def test_accepts(value, hint, ok):
    assert accepts(value, hint) is ok


def test_descriptions_name_the_bound_and_hide_classes_a_config_cannot_give():
    assert describe(PositiveInt | None) == "an integer ≥ 1 or null"
    assert describe(float | torch.Tensor) == "a finite number"
    assert describe(list[NonNegativeInt]) == "a list of integers ≥ 0"
    assert describe(int | float | None) == "a finite number or null"


class _Target:
    def __init__(self, count: PositiveInt = 4, rate: float = 0.5, **kwargs) -> None:
        pass


def test_fix_is_the_shipped_value_then_the_default_and_an_interpolation_names_its_source():
    cfg = OmegaConf.create({"width": "abc", "node": {"_target_": f"{__name__}._Target", "count": "${width}",
                                                     "rate": "fast"}})
    with pytest.raises(ConfigError) as info:
        check_config(cfg, shipped=lambda key: {"width": 8}.get(key, NOT_GIVEN))
    assert str(info.value) == "width: expected an integer ≥ 1, got 'abc'. Fix: width=8"
    cfg.width = 8
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value) == "node.rate: expected a finite number, got 'fast'. Fix: node.rate=0.5"


def test_a_base_class_types_what_a_subclass_passes_on_with_kwargs():
    from ldmlab.data.image_folder import ImageFolderDataModule

    params = target_params(ImageFolderDataModule)
    assert params["batch_size"][0] == PositiveInt and params["val_size"][0] == NonNegativeInt
    assert inspect.signature(ImageFolderDataModule).parameters["kwargs"].kind == inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize(("name", "problem"), [("foo", "not a device"), ("gpu0", "not a device"),
                                                ("meta", "no meta device")])
def test_device_names_torch_does_not_know_or_this_machine_lacks(name, problem):
    with pytest.raises(ConfigError) as info:
        resolve_device(name)
    assert info.value.key == "device" and problem in info.value.problem


def test_device_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
