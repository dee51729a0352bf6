"""The running command's config as shipped: what a bad value's message suggests as the fix.

"As shipped" is the command's config composed with the command line's group choices
(``data=image_folder``, ``experiment=...``, ``trainer=gpu``) but none of its values, so the fix for
``data.batch_size=abc`` is the batch size this very command would have used.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ldmlab.config.types import NOT_GIVEN

_WHOLE_NODE = re.compile(r"^\$\{([\w.]+)\}$")  # module.backbone: ${backbone}


def shipped_value(key: str) -> Any:
    """``key``'s value (resolved) in the running command's shipped config; ``NOT_GIVEN`` where
    the key has none (added by the user, or no Hydra app is running)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return NOT_GIVEN
    hydra = HydraConfig.get()
    groups = set(hydra.runtime.choices)
    kept = tuple(o for o in hydra.overrides.task if _group_of(o) in groups)
    shipped = _composed(hydra.job.config_name, kept)
    try:
        value = OmegaConf.select(shipped, key, default=NOT_GIVEN) if shipped is not None else NOT_GIVEN
    except Exception:  # noqa: BLE001 - an interpolation that only resolves with the user's values
        return NOT_GIVEN
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _group_of(override: str) -> str:
    """The group an override chooses, as ``hydra.runtime.choices`` names it: ``data=x`` → ``data``,
    ``optimizer@module.optimizer=adam`` → ``optimizer@module.optimizer``."""
    return override.lstrip("+~").split("=", 1)[0]


def shipped_source(key: str) -> str:
    """``key``, or the key its node is interpolated from in the running command's config as
    composed (unresolved): ``module.backbone.num_heads`` of ``module.backbone: ${backbone}`` →
    ``backbone.num_heads`` (where the user sets it)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return key
    hydra = HydraConfig.get()
    composed = _composed(hydra.job.config_name, tuple(hydra.overrides.task))
    raw = OmegaConf.to_container(composed, resolve=False) if composed is not None else None
    parts = key.split(".")
    for depth, part in enumerate(parts):
        raw = raw.get(part) if isinstance(raw, dict) else None
        if isinstance(raw, str) and (whole := _WHOLE_NODE.match(raw)):
            return shipped_source(".".join([whole.group(1), *parts[depth + 1:]]))
    return key


@cache
def _composed(config_name: str, group_overrides: tuple[str, ...]) -> DictConfig | None:
    from hydra import compose

    try:
        return compose(config_name, overrides=list(group_overrides))
    except Exception:  # noqa: BLE001 - no fix to suggest is better than a second error
        return None
