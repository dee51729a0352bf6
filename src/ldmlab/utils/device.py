"""The ``device`` setting of the commands that run a trained model (sample, evaluate, invert, ...)."""

from __future__ import annotations

import torch

from ldmlab.utils.errors import ConfigError

AUTO = "auto"


def resolve_device(name: str, key: str = "device") -> torch.device:
    """``auto`` → CUDA when available, else the CPU; anything else must name a device torch
    knows (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...) that this machine has."""
    if name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(key, f"{name!r} is not a device (cpu, cuda, cuda:<index>, mps, ...)",
                          f"{key}={AUTO}") from None
    if device.type != "cpu" and not _available(device.type):
        raise ConfigError(key, f"{name!r}: this machine has no {device.type} device", f"{key}=cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(key, f"{name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                          f"{key}=cuda:0")
    return device


def _available(kind: str) -> bool:
    if kind == "mps":
        return torch.backends.mps.is_available()
    backend = getattr(torch, kind, None)
    return bool(backend is not None and hasattr(backend, "is_available") and backend.is_available())
