"""Stage-2 checkpoints written before the denoiser slot was renamed ``unet`` → ``backbone``,
read under today's names: their configs (``unet``, ``module.unet``) and state-dict names
(``model.unet.*`` and the EMA's ``ema.shadow.unet.*``)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

OLD_SLOT, SLOT = "unet", "backbone"
_HOLDERS = ("model.", "ema.shadow.")  # the module dicts that hold the denoiser slot


def renamed_slot(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its ``unet`` key as ``backbone``, in place of it; as is without one."""
    if OLD_SLOT not in config or SLOT in config:
        return config
    return {SLOT if k == OLD_SLOT else k: v for k, v in config.items()}


def rename_state(state: MutableMapping[str, Any], prefix: str = "") -> None:
    """Rename, in place, ``{prefix}model.unet.*`` and ``{prefix}ema.shadow.unet.*`` entries to
    ``...backbone.*`` (``prefix``: where the stage-2 module sits in the state)."""
    old = tuple(f"{prefix}{holder}{OLD_SLOT}." for holder in _HOLDERS)
    for key in [k for k in state if k.startswith(old)]:
        holder = next(o for o in old if key.startswith(o))
        state[holder[: -len(OLD_SLOT) - 1] + SLOT + "." + key[len(holder):]] = state.pop(key)
