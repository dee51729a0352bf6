"""A classifier's architecture stored in its checkpoint as plain data, never a config to instantiate."""

from __future__ import annotations


def network_config(config: object, fields: dict[str, type]) -> dict:
    """``config`` if it is a dict of ``fields``' names with values of their plain types."""
    if not isinstance(config, dict):
        raise TypeError("no 'network' dict")
    for name, value in config.items():
        if name not in fields or not is_plain(value, fields[name]):
            raise TypeError(f"unexpected network entry {name}={value!r}")
    return config


def is_plain(value: object, kind: type) -> bool:
    """``value`` is a ``kind`` and no bool; ``kind=list``: a list or tuple of such ints."""
    if kind is list:
        return isinstance(value, list | tuple) and all(is_plain(v, int) for v in value)
    return isinstance(value, kind) and not isinstance(value, bool)
