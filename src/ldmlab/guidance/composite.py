"""Several guidance terms at once, each with its own scale (e.g. CFG + classifier guidance)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ldmlab.guidance.base import BoundGuidance, Guidance, GuidanceContext
from ldmlab.utils.errors import FieldError


class CompositeGuidance(Guidance):
    """Applies ``terms`` (at most one output term, which acts first; gradient terms in order);
    ``sweep`` names the term whose scale ``scale`` / ``with_scale`` read and set (a sweep turns that one)."""

    def __init__(self, terms: Mapping[str, Guidance], sweep: str) -> None:
        self.members = {name: term for name, term in terms.items() if term is not None}
        if sweep not in self.members:
            raise FieldError("guidance", "sweep", f"{sweep!r} is not one of the terms {sorted(self.members)}",
                             f"{{key}}={next(iter(self.members), 'cfg')}")
        self.output_terms = tuple(leaf for term in self.members.values() for leaf in term.output_terms)
        self.gradient_terms = tuple(leaf for term in self.members.values() for leaf in term.gradient_terms)
        if len(self.output_terms) > 1:
            raise FieldError("guidance", "terms", "holds more than one output (classifier-free) guidance",
                             "keep one cfg term")
        labels = {term.num_classes for term in self.members.values()} - {None}
        if len(labels) > 1:
            raise FieldError("guidance", "terms", f"terms read different label sets {sorted(labels)}",
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

    def with_scale(self, scale: float) -> Guidance:
        members = dict(self.members) | {self.sweep: self.members[self.sweep].with_scale(scale)}
        return CompositeGuidance(members, self.sweep)

    def prepare(self, context: GuidanceContext) -> BoundGuidance:
        return BoundGuidance.combine([term.prepare(context) for term in self.members.values()])

    def condition_inputs(self, num_samples: int) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for term in self.members.values():
            inputs |= term.condition_inputs(num_samples)
        return inputs
