"""A multirun job's ``.hydra/config.yaml`` read as data: plain YAML, nothing resolved.

The file comes from a run dir, so it is input like any other: an OmegaConf load would resolve
``${oc.env:...}`` (or any resolver) while the report reads a value, and write what it returns
into the report. Here a value is the YAML scalar itself; one holding an interpolation is refused,
naming the file and the key, never showing or resolving it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ldmlab.utils.errors import ConfigError

KEY = "sweep_dir"
MISSING = object()


def read_job_config(path: Path) -> dict:
    """The YAML mapping in ``path``; refused (``sweep_dir``) when unreadable or not a mapping."""
    try:
        if not path.is_file():  # a FIFO or a device would never end
            raise FileNotFoundError(path)
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(KEY, f"{path} is not readable YAML ({type(err).__name__}{where})",
                          f"restore {path} (Hydra writes it) or give another sweep_dir") from None
    if not isinstance(config, dict):
        raise ConfigError(KEY, f"{path} holds a {type(config).__name__}, not a config mapping",
                          f"restore {path} or give another sweep_dir")
    return config


def config_value(config: dict, key: str, path: Path):
    """The scalar at dotted ``key`` of ``config`` (from ``path``), or ``MISSING``. A mapping or
    list there, or an interpolation (``${...}``), is refused."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    if isinstance(node, dict | list):
        raise ConfigError("group_by", f"{key} in {path} is a {type(node).__name__}, not one value",
                          f"name a key holding a single value, e.g. {key}.<field>")
    if isinstance(node, str) and "${" in node:
        raise ConfigError(KEY, f"{path} holds an interpolation at {key}; a run dir's config is read as "
                          "data and never resolved", f"write the value itself at {key} in {path}")
    return node
