"""KID, precision/recall and Inception Score from feature rows, by torch-fidelity's own functions.

Conventions: ``generated`` and ``reference`` are float32 (N, d) CPU tensors, generated first (as
torch-fidelity's input1 / input2); ``seed`` is torch-fidelity's ``rng_seed``. These functions
compute on the tensors they are given and read no file.
"""

from __future__ import annotations

import torch
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

PRC_NEIGHBORHOOD = 3  # Kynkäänniemi et al.'s k, as the ADM evaluator


def kid(generated: torch.Tensor, reference: torch.Tensor, subset_size: int, subsets: int,
        seed: int) -> tuple[float, float]:
    """Kernel Inception Distance (cubic polynomial kernel): mean and std over ``subsets`` random
    subsets of ``subset_size`` rows of each side."""
    out = kid_features_to_metric(generated, reference, kid_subset_size=subset_size, kid_subsets=subsets,
                                 rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]


def precision_recall(generated: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Improved precision and recall (k = ``PRC_NEIGHBORHOOD`` nearest-neighbour balls)."""
    out = prc_features_to_metric(generated, reference, prc_neighborhood=PRC_NEIGHBORHOOD, save_cpu_ram=True,
                                 verbose=False)
    return out[KEY_METRIC_PRECISION], out[KEY_METRIC_RECALL]


def inception_score(logits: torch.Tensor, splits: int, seed: int) -> tuple[float, float]:
    """Inception Score of logits (N, classes): mean and std over ``splits`` shuffled splits."""
    out = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=seed)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]
