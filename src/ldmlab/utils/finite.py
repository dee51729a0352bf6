"""Stop training with one clear message when a loss stops being finite."""

import torch


def ensure_finite(loss: torch.Tensor, name: str, step: int, fix: str) -> None:
    """Raise ``FloatingPointError`` if ``loss`` is NaN/Inf (before any optimiser or checkpoint step)."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"{name} is {loss.item()} at step {step}. Fix: {fix}")
