"""No guidance: the plain conditional (or unconditional) model."""

from __future__ import annotations

from ldmlab.guidance.base import Guidance
from ldmlab.utils.errors import ConfigError, part_key


class NoGuidance(Guidance):
    """Applies nothing; ``with_scale`` is refused (there is no scale to sweep)."""

    name = "none"

    def with_scale(self, scale: float) -> Guidance:
        key = part_key("guidance")
        raise ConfigError(key, "is none, so there is no guidance scale to sweep",
                          f"{key}=cfg (or {key}=classifier)")
