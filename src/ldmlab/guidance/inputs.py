"""The inputs of guided samples: the conditioner's (``build_condition``) plus the guidance's."""

from __future__ import annotations

from typing import Any

from ldmlab.conditioning.condition_builder import Source, build_condition
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.guidance.base import Guidance


def guided_condition(
    conditioner: Conditioner,
    guidance: Guidance | None,
    num_samples: int,
    *,
    class_label: int | None = None,
    prompt: str | None = None,
    source: Source | None = None,
) -> dict[str, Any]:
    """``build_condition``'s inputs (with labels for a guidance that reads ``label``, e.g. the
    classifier's classes in turn or ``class_label``) and ``guidance.condition_inputs``; every
    entry has ``num_samples`` rows, so ``chunk_of`` slices them together."""
    classes = guidance.num_classes if guidance is not None else None
    condition = build_condition(conditioner, num_samples, class_label=class_label, prompt=prompt,
                                source=source, label_classes=classes)
    return condition | (guidance.condition_inputs(num_samples) if guidance is not None else {})
