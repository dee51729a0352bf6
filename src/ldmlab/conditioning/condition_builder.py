"""What generated samples are conditioned on: one rule for sample, evaluate, sweeps and image logs.

Each embedder of the conditioner decides, by what it is:
- a class embedder (it has ``num_classes``): ``class_label`` for every sample if given (checked
  to be a valid class), else 0, 1, …, K−1, 0, … (balanced, as FID's reference set);
- a text embedder: ``prompt`` for every sample if given, else the ``source``'s captions;
- a generator-backed embedder (it can ``draw``, e.g. DiffuseVAE's x̂, a Gaussian z_sem prior): its
  generator's samples (seed 0, so every sampling seed refines the same x̂);
- any other embedder (``lowres``, a semantic encoder without a prior, …): the ``source``'s values
  for its ``source_key`` (the entry it derives its input from) or else its ``input_key``.
Without a ``source`` such inputs are left out, so those samples use the learned null. A
``class_label`` or ``prompt`` nothing reads is refused. ``label_classes``: K of a reader of
``label`` outside the conditioner (classifier guidance), which gets labels by the class rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import Dataset

from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.conditioning.text_encoder import TextEmbedder
from ldmlab.utils.errors import ConfigError

Source = Dataset | Mapping[str, Any]
"""Items 0, 1, … (cycled) of a dataset of sample dicts, or rows of one collated batch."""


def build_condition(
    conditioner: Conditioner,
    num_samples: int,
    *,
    class_label: int | None = None,
    prompt: str | None = None,
    source: Source | None = None,
    label_classes: int | None = None,
) -> dict[str, Any]:
    """The conditioner's inputs for ``num_samples`` samples, by the rules above: tensors (N, ...)
    on the CPU (or on the batch's device for a batch source), strings as a list of N."""
    embedders = list(conditioner.embedders.values())
    keys = sorted(e.input_key for e in embedders)
    classes = [e for e in embedders if hasattr(e, "num_classes")]
    texts = [e for e in embedders if isinstance(e, TextEmbedder)]
    if class_label is not None and not classes and label_classes is None:
        raise ConfigError("class_label", f"this checkpoint reads {keys}, not class labels",
                          "class_label=null (or use a class-conditional checkpoint or guidance=classifier)")
    if prompt is not None and not texts:
        raise ConfigError("prompt", f"this checkpoint reads {keys}, not text",
                          "prompt=null (or train with conditioner=text or hybrid)")
    condition: dict[str, Any] = {}
    for embedder in embedders:
        key = embedder.input_key
        if embedder in classes:
            condition[key] = _labels(embedder.num_classes, num_samples, class_label)
        elif embedder in texts and prompt is not None:
            condition[key] = [str(prompt)] * num_samples
        elif (drawn := embedder.draw(num_samples) if hasattr(embedder, "draw") else None) is not None:
            condition[key] = drawn
        elif source is not None:
            source_key = getattr(embedder, "source_key", key)
            condition[source_key] = _values(source, source_key, num_samples)
    if label_classes is not None and "label" not in condition:
        condition["label"] = _labels(label_classes, num_samples, class_label)
    return condition


def chunk_of(condition: dict[str, Any], start: int, stop: int, device: torch.device | str) -> dict[str, Any]:
    """Entries ``start:stop`` of every input, tensors moved to ``device``."""
    return {key: value[start:stop].to(device) if torch.is_tensor(value) else value[start:stop]
            for key, value in condition.items()}


def _labels(num_classes: int, n: int, class_label: int | None) -> torch.Tensor:
    if class_label is None:
        return torch.arange(n) % num_classes
    if not 0 <= int(class_label) < num_classes:
        raise ConfigError("class_label", f"{class_label} is not a class in [0, {num_classes - 1}]",
                          f"e.g. class_label=0 (classes 0..{num_classes - 1}), or class_label=null for all")
    return torch.full((n,), int(class_label))


def _values(source: Source, key: str, n: int) -> torch.Tensor | list:
    if isinstance(source, Mapping):  # one collated batch: rows 0, 1, … cycled
        column = source[key]
        if torch.is_tensor(column):
            return column[torch.arange(n, device=column.device) % len(column)]
        return [column[i % len(column)] for i in range(n)]
    values = [source[i % len(source)][key] for i in range(n)]
    if torch.is_tensor(values[0]):
        return torch.stack(values)
    if isinstance(values[0], int | float):
        return torch.tensor(values)
    return values
