"""The trained domain classifier as a feature network (tag "classifier").

uint8 images (B, 3, H, W) at the classifier's resolution → "features": its penultimate features
(B, feature_dim) for FID / KID / precision-recall, and "logits": (B, num_classes) with the head's
bias, for the Inception Score and the label accuracy. Inputs are mapped back to the classifier's
convention: [-1, 1], RGB averaged to one channel for a grayscale classifier (exact for the
channel-repeated grayscale images the evaluator passes).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ldmlab.classifier.loading import ckpt_key, load_classifier
from ldmlab.metrics.reference_stats import file_digest
from ldmlab.utils.errors import ConfigError

FEATURES, LOGITS = "features", "logits"


class ClassifierFeatures:
    """``FeatureNetwork`` of a ``train_classifier`` checkpoint (read weights-only), on ``device``."""

    tag = "classifier"

    def __init__(self, ckpt_path: str | Path, device: str | torch.device = "cpu") -> None:
        self.ckpt_path, self.device = Path(ckpt_path), torch.device(device)
        self.network = load_classifier(ckpt_path).to(self.device)

    def dims(self) -> dict[str, int]:
        return {FEATURES: self.network.feature_dim, LOGITS: self.network.num_classes}

    def identity(self) -> str:
        return f"classifier@{file_digest(self.ckpt_path)}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        net = self.network
        expected = (net.resolution, net.resolution)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3 or (
                tuple(images.shape[-2:]) != expected):
            raise ConfigError(
                ckpt_key(), f"the classifier takes uint8 (B, 3, {net.resolution}, {net.resolution}), "
                f"got {images.dtype} {tuple(images.shape)}",
                "evaluate images at the resolution the classifier was trained on",
            )
        x = images.to(self.device).float() / 127.5 - 1
        if net.in_channels == 1:
            x = x.mean(dim=1, keepdim=True)
        features = net.features(x)
        return {FEATURES: features.float().cpu(), LOGITS: net.head(features).float().cpu()}
