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

    def current_decay(self) -> torch.Tensor:
        """The decay of the next update, a 0-d float32 tensor on the buffers' device."""
        n = self.num_updates.float()
        return torch.clamp((1 + n) / (self.warmup + n), max=self.decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step; tensor ops only (no host sync)."""
        weight = 1.0 - self.current_decay()
        averages = list(self.shadow.parameters())
        new = [p.detach() for p in model.parameters()]
        if len(averages) != len(new):
            raise ValueError(f"EMA holds {len(averages)} parameters, the model has {len(new)}")
        if averages:
            by_dtype = {dtype: weight.to(dtype) for dtype in {a.dtype for a in averages}}  # one cast each
            torch._foreach_lerp_(averages, new, [by_dtype[a.dtype] for a in averages])
        buffers, model_buffers = list(self.shadow.buffers()), list(model.buffers())
        if buffers:
            torch._foreach_copy_(buffers, model_buffers)
        self.num_updates += 1

    def train(self, mode: bool = True) -> EMA:
        """The shadow always stays in eval mode (no dropout, no CFG condition dropping)."""
        super().train(mode)
        self.shadow.eval()
        return self


class EMAStep:
    """LightningModule mixin: ``optimizer_step``, then ``self.ema.update`` from the submodule
    named ``EMA_SOURCE``: once per optimiser step (also under gradient accumulation) and before
    any batch-end checkpoint. ``self.ema`` is an ``EMA``, or None for no averaging."""

    EMA_SOURCE: str
    ema: EMA | None

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(getattr(self, self.EMA_SOURCE))
