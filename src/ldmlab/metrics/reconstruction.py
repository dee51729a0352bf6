"""Reconstruction quality: PSNR, SSIM (torchmetrics) and LPIPS, accumulated over batches."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ldmlab.nn.lpips import LPIPS


class ReconstructionMetrics(nn.Module):
    """``update(x, x_rec)`` with images (B, C, H, W) in [-1, 1]; ``compute()`` → {psnr, ssim, lpips}.

    PSNR/SSIM are computed on [0, 1] images (data_range 1); LPIPS is averaged per image. All three
    run in float32 even under mixed precision. Distributed reduction is handled by torchmetrics.
    """

    def __init__(self, lpips: LPIPS | None) -> None:
        super().__init__()
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.lpips_mean = MeanMetric()
        self.lpips = lpips

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_rec: torch.Tensor) -> None:
        x, x_rec = x.float().clamp(-1, 1), x_rec.float().clamp(-1, 1)
        real, fake = (x + 1) / 2, (x_rec + 1) / 2
        with torch.autocast(x.device.type, enabled=False):
            self.psnr.update(fake, real)
            self.ssim.update(fake, real)
            if self.lpips is not None:
                self.lpips_mean.update(self.lpips(x, x_rec))

    def compute(self) -> dict[str, torch.Tensor]:
        out = {"psnr": self.psnr.compute(), "ssim": self.ssim.compute()}
        if self.lpips is not None:
            out["lpips"] = self.lpips_mean.compute()
        return out

    def reset(self) -> None:
        for metric in (self.psnr, self.ssim, self.lpips_mean):
            metric.reset()
