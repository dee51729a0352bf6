"""Where the Hydra configs live (shipped in the package); one option of a config group as plain data."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ldmlab.utils.errors import ConfigError

# ldmlab/conf: the package's copy of the repository's conf/ (a link to it in the source tree)
CONF_DIR = str(Path(str(files("ldmlab") / "conf")).resolve())


def group_options(group: str) -> list[str]:
    """The option names of a config group, e.g. ``["ddim", "ddpm", "dpmpp"]`` for ``sampler``."""
    return sorted(path.stem for path in (Path(CONF_DIR) / group).glob("*.yaml"))


def load_option(group: str, name: str, key: str) -> DictConfig:
    """``conf/<group>/<name>.yaml``; an unknown name raises ConfigError naming ``key``."""
    options = group_options(group)
    if name not in options:
        raise ConfigError(key, f"{name!r} is not a {group} option", f"use one of {options}")
    return OmegaConf.load(Path(CONF_DIR) / group / f"{name}.yaml")


def option_of(group: str, obj: object) -> str:
    """The group option whose ``_target_`` is ``obj``'s class (e.g. ``"ddim"``), else the class name."""
    target = f"{type(obj).__module__}.{type(obj).__qualname__}"
    for name in group_options(group):
        if OmegaConf.load(Path(CONF_DIR) / group / f"{name}.yaml").get("_target_") == target:
            return name
    return type(obj).__name__
