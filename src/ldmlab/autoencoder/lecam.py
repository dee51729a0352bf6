"""LeCam regularisation of the discriminator (Tseng et al., CVPR 2021), as newer tokenizers use it.

R = mean relu(ℓ_real − μ_fake)² + mean relu(μ_real − ℓ_fake)², with μ_real / μ_fake exponential
moving averages (``decay``) of the mean real / fake logits, updated with this batch before R is
taken. It keeps the discriminator's logits from drifting apart, so the gradients it hands the
generator stay bounded. The averages are buffers: checkpointed, and restored on resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeCam(nn.Module):
    """``reg(logits_real, logits_fake)`` → scalar R; the moving averages are updated in place
    (tensor ops on the logits' device, no host sync)."""

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"decay={decay} must be in [0, 1)")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.ema_real.lerp_(logits_real.detach().float().mean(), 1 - self.decay)
            self.ema_fake.lerp_(logits_fake.detach().float().mean(), 1 - self.decay)
        return (F.relu(logits_real.float() - self.ema_fake).pow(2).mean()
                + F.relu(self.ema_real - logits_fake.float()).pow(2).mean())
