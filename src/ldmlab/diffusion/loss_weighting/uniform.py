"""Unweighted loss (the "simple" objective of Ho et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.loss_weighting.base import LossWeighting
from ldmlab.diffusion.process import NoiseProcess


class UniformWeighting(LossWeighting):
    """w(t) = 1."""

    def weight(self, t: Tensor, schedule: NoiseProcess) -> Tensor:
        return torch.ones(t.shape, device=t.device)
