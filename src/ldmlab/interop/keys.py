"""The config group that picks a part's option, for messages about a model diffusers cannot express."""

from __future__ import annotations

from ldmlab.utils.errors import part_key


def group_key(part: str, field: str | None = None) -> str:
    """``part``'s key (``field`` of it) in group syntax: ``/`` for ``.``, e.g. ``diffusion/schedule``."""
    return part_key(part, field).replace(".", "/")
