"""Fixtures shared by the metrics tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ldmlab.metrics.inception import inception_weights_path


@pytest.fixture(scope="session")
def inception_with_head(tmp_path_factory) -> Path:
    """The offline Inception weights with a random (finite) 1008-way classifier head, as a .pt of
    tensors (give it as ``inception_weights`` with ``LDMLAB_CACHE`` set to a temporary folder:
    ``inception_weights_path`` writes a content-addressed copy there)."""
    state = torch.load(inception_weights_path(), weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key in ("fc.weight", "fc.bias"):
        state[key] = torch.randn(state[key].shape, generator=generator) * 0.2
    path = tmp_path_factory.mktemp("weights") / "with_head.pt"
    torch.save(state, path)
    return path
