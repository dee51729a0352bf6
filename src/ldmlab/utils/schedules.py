"""Learning-rate schedules used by the LightningModules."""

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def linear_warmup(optimizer: Optimizer, warmup_steps: int) -> LambdaLR:
    """Scale the LR linearly from 1/warmup_steps to 1 over ``warmup_steps`` steps, then keep it."""
    steps = max(int(warmup_steps), 1)
    return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / steps))
