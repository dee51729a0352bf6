"""The real images a sweep compares with, and the sample counts its metrics can work with.

``num_samples`` / ``num_reference`` / ``reference_split`` are fields of the ``sweep`` part
(top-level keys for ``evaluate``, ``callbacks.guidance_sweep`` in training), so errors name the
key the user typed.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import Dataset

from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.reference_stats import SPLITS, ReferenceSet
from ldmlab.utils.errors import FieldError, part_key


def load_reference(
    datamodule: pl.LightningDataModule, split: str, num_reference: int
) -> tuple[ReferenceSet, Dataset]:
    """The first ``num_reference`` images of ``split`` and the split's dataset (for conditions)."""
    if split not in SPLITS:
        raise FieldError("sweep", "reference_split", f"unknown split {split!r}", f"use one of {SPLITS}")
    datamodule.setup("fit")
    dataset = getattr(datamodule, f"{split}_set")
    if not 0 < num_reference <= len(dataset):
        raise FieldError("sweep", "num_reference", f"{num_reference} images asked, the {split} split has "
                         f"{len(dataset)}", f"set {{key}} between 1 and {len(dataset)}")
    return ReferenceSet.from_datamodule(datamodule, split, num_reference), dataset


def check_counts(evaluator: FidelityEvaluator, num_samples: int) -> None:
    """Before sampling: ``num_samples`` per grid point and the reference set fit every metric
    (FID's feature dimension, KID's subset size, the Inception Score's splits)."""
    evaluator.check_counts(num_samples, part_key("sweep", "num_samples"), part_key("sweep", "num_reference"))
