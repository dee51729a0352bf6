"""What a torch file would import if unpickled, found without unpickling it.

``torch.load(weights_only=True)`` refuses any global outside torch's allow-list; libraries that
load with ``weights_only=False`` (torch-fidelity reads its Inception weights that way) may only be
given files for which ``unsafe_globals`` is empty.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch


def unsafe_globals(path: str | Path) -> list[str]:
    """Globals that unpickling ``path`` would import beyond torch's weights-only allow-list,
    sorted; ``["<not a torch zip file>"]`` when it cannot be inspected."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - a file torch cannot inspect is never safe to hand on
        return ["<not a torch zip file>"]
    return sorted(set(names))


def refusal_reason(path: str | Path, err: BaseException) -> str:
    """One short line saying why ``torch.load(path, weights_only=True)`` raised ``err``."""
    names = [n for n in unsafe_globals(path) if not n.startswith("<")]
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if names or found:
        return f"unpickling it would import {', '.join(names[:4]) or found.group(1)}: code, not weights"
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(err), re.S)
    detail = " ".join((found.group(1) if found else str(err)).split())
    first_sentence = re.split(r"(?<=[a-z])\. ", detail)[0]
    return f"{type(err).__name__}: {first_sentence[:160]}"
