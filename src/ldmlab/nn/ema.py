"""Exponential moving average of a module's parameters, held as a saved submodule."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Shadow copy of ``model`` updated as θ̄ ← d·θ̄ + (1 − d)·θ after each optimiser step.

    The decay warms up as ``d = min(decay, (1 + n) / (warmup + n))`` (n = updates so far), so
    early averages are not dominated by the random initialisation. The shadow and ``n`` are
    buffers/parameters of this module, so they are saved in and restored from checkpoints.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: int = 10) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema.decay must lie in [0, 1), got {decay}")
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1 + n) / (self.warmup + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for avg, new in zip(self.shadow.parameters(), model.parameters(), strict=True):
            avg.lerp_(new.detach(), 1.0 - decay)
        for avg, new in zip(self.shadow.buffers(), model.buffers(), strict=True):
            avg.copy_(new)
        self.num_updates += 1

    def train(self, mode: bool = True) -> EMA:
        """The shadow always stays in eval mode (no dropout, no CFG condition dropping)."""
        super().train(mode)
        self.shadow.eval()
        return self
