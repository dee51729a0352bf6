"""Several guidance terms at once, each with its own scale (e.g. CFG + classifier guidance)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ldmlab.guidance.base import Guidance, GuidanceContext, OutputGuidance
from ldmlab.utils.errors import ConfigError


class CompositeGuidance(Guidance):
    """Applies ``terms`` in order (at most one output term, which acts first); ``sweep`` names
    the term whose scale ``scale`` / ``with_scale`` read and set (a sweep turns that one)."""

    def __init__(self, terms: Mapping[str, Guidance], sweep: str) -> None:
        self.members = {name: term for name, term in terms.items() if term is not None}
        if sweep not in self.members:
            raise ConfigError("guidance.sweep", f"{sweep!r} is not one of the terms {sorted(self.members)}",
                              f"guidance.sweep={next(iter(self.members), 'cfg')}")
        if sum(isinstance(term, OutputGuidance) for term in self.members.values()) > 1:
            raise ConfigError("guidance.terms", "holds more than one output (classifier-free) guidance",
                              "keep one cfg term")
        labels = {term.num_classes for term in self.members.values()} - {None}
        if len(labels) > 1:
            raise ConfigError("guidance.terms", f"terms read different label sets {sorted(labels)}",
                              "use terms trained on the same classes")
        self.sweep = sweep
        self.name = "+".join(self.members)
        self.num_classes = next(iter(labels), None)

    @property
    def scale(self) -> float:
        return self.members[self.sweep].scale

    @property
    def swept(self) -> Guidance:
        return self.members[self.sweep].swept

    def terms(self) -> list[Guidance]:
        ordered = sorted(self.members.values(), key=lambda term: not isinstance(term, OutputGuidance))
        return [leaf for term in ordered for leaf in term.terms()]

    def with_scale(self, scale: float) -> Guidance:
        members = dict(self.members) | {self.sweep: self.members[self.sweep].with_scale(scale)}
        return CompositeGuidance(members, self.sweep)

    def prepare(self, context: GuidanceContext) -> None:
        for term in self.members.values():
            term.prepare(context)

    def condition_inputs(self, num_samples: int) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for term in self.members.values():
            inputs |= term.condition_inputs(num_samples)
        return inputs
