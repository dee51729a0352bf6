"""Min-SNR-γ weighting (Hang et al. 2023)."""

from __future__ import annotations

from torch import Tensor

from ldmlab.diffusion.loss_weighting.base import LossWeighting
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.utils.errors import FieldError

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
            raise FieldError("loss_weighting", "parameterization", f"min-SNR weighting is defined for "
                             f"{PARAMETERIZATIONS}, got {parameterization!r}",
                             "diffusion/loss_weighting=uniform (EDM's λ(σ) is built into its "
                             "preconditioning)")
        if not gamma > 0.0:
            raise FieldError("loss_weighting", "gamma", f"must be > 0, got gamma={gamma}", "e.g. {key}=5")
        self.parameterization = parameterization
        self.gamma = gamma

    def weight(self, t: Tensor, schedule: NoiseProcess) -> Tensor:
        snr = schedule.snr(t)
        if self.parameterization == "eps":
            return (self.gamma / snr).clamp(max=1.0)
        if self.parameterization == "v":
            return snr.clamp(max=self.gamma) / (snr + 1.0)
        return snr.clamp(max=self.gamma)
