"""No guidance: the plain conditional (or unconditional) model."""

from __future__ import annotations

from ldmlab.guidance.base import Guidance
from ldmlab.utils.errors import ConfigError


class NoGuidance(Guidance):
    """Applies nothing; ``with_scale`` is refused (there is no scale to sweep)."""

    name = "none"

    def terms(self) -> list[Guidance]:
        return []

    def with_scale(self, scale: float) -> Guidance:
        raise ConfigError("guidance", "is none, so there is no guidance scale to sweep",
                          "guidance=cfg (or guidance=classifier)")
