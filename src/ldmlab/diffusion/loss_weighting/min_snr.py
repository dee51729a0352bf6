"""Min-SNR-γ weighting (Hang et al. 2023)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.diffusion.loss_weighting.base import LossWeighting
from ldmlab.diffusion.process import NoiseProcess

PARAMETERIZATIONS = ("eps", "v", "x0")


class MinSNRWeighting(LossWeighting):
    """Weights the loss so it equals min(SNR, γ)·‖x0 error‖².

    An error on the target is an x0 error scaled by sqrt(SNR) (ε), sqrt(SNR + 1) (v) or 1
    (x0), so w = min(SNR, γ)/SNR, min(SNR, γ)/(SNR + 1) or min(SNR, γ) respectively. For ε at
    SNR = 0 the weight is its limit, 1.

    parameterization: name of the parameterisation being trained ("eps", "v" or "x0").
    """

    def __init__(self, parameterization: str = "eps", gamma: float = 5.0) -> None:
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
            )
        if not gamma > 0.0:
            raise ValueError(f"gamma must be > 0, got gamma={gamma}")
        self.parameterization = parameterization
        self.gamma = gamma

    def weight(self, t: Tensor, schedule: NoiseProcess) -> Tensor:
        snr = schedule.snr(t)
        if self.parameterization == "eps":
            return (self.gamma / snr).clamp(max=1.0)
        if self.parameterization == "v":
            return snr.clamp(max=self.gamma) / (snr + 1.0)
        return snr.clamp(max=self.gamma)
