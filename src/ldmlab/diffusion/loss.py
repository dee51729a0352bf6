"""The per-sample weighted regression loss of diffusion training."""

from __future__ import annotations

import torch
from torch import Tensor, nn

LOSS_TYPES = ("l2", "l1")


class DiffusionLoss(nn.Module):
    """mean_b( w_b · mean_{c,h,w} d(model_output, target) ), d = squared or absolute error.

    loss_type: "l2" (squared error) or "l1" (absolute error).
    """

    def __init__(self, loss_type: str = "l2") -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        self.loss_type = loss_type

    def forward(self, model_output: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        """model_output, target (B, ...), weights (B,) → scalar (at least float32)."""
        dtype = torch.promote_types(model_output.dtype, target.dtype)
        dtype = torch.promote_types(dtype, torch.float32)
        error = model_output.to(dtype) - target.to(dtype)
        error = error.square() if self.loss_type == "l2" else error.abs()
        per_sample = error.flatten(start_dim=1).mean(dim=1)
        return (weights.to(per_sample.dtype) * per_sample).mean()
