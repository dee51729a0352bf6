"""What each sweep sample is conditioned on: every class in turn, other inputs from real data."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from ldmlab.conditioning.conditioner import Conditioner


def sweep_condition(conditioner: Conditioner, num_samples: int, dataset: Dataset | None = None) -> dict:
    """The conditioner's inputs for ``num_samples`` samples.

    A class embedder's key (``label``) gets 0, 1, …, K−1, 0, … (balanced classes, as FID's
    reference set); every other embedder's key (``caption``, ``lowres``, …) gets the values of
    ``dataset`` items 0, 1, … (cycled): tensors stacked to (N, ...), numbers to an (N,) tensor,
    strings to a list. Without a dataset those keys are left out, so they sample from their nulls.
    """
    condition: dict[str, Any] = {}
    for embedder in conditioner.embedders.values():
        key = embedder.input_key
        if hasattr(embedder, "num_classes"):
            condition[key] = torch.arange(num_samples) % embedder.num_classes
        elif dataset is not None:
            condition[key] = _collate([dataset[i % len(dataset)][key] for i in range(num_samples)])
    return condition


def chunk_of(condition: dict, start: int, stop: int, device: torch.device) -> dict:
    """Entries ``start:stop`` of every input, tensors moved to ``device``."""
    return {key: value[start:stop].to(device) if torch.is_tensor(value) else value[start:stop]
            for key, value in condition.items()}


def _collate(values: list) -> torch.Tensor | list:
    if torch.is_tensor(values[0]):
        return torch.stack(values)
    if isinstance(values[0], (int, float)):
        return torch.tensor(values)
    return values
