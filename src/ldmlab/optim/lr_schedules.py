"""Learning-rate schedules used by the LightningModules (LR multipliers per optimiser step)."""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def linear_warmup(optimizer: Optimizer, warmup_steps: int) -> LambdaLR:
    """Scale the LR linearly from 1/warmup_steps to 1 over ``warmup_steps`` steps, then keep it."""
    steps = max(int(warmup_steps), 1)
    return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / steps))


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int, final_ratio: float) -> LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a half cosine from 1 down to ``final_ratio`` at
    ``total_steps`` (held there afterwards)."""
    warmup, total = max(int(warmup_steps), 1), max(int(total_steps), 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(total - warmup, 1))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
