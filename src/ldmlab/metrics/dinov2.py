"""FD-DINOv2's feature network (EDM2): DINOv2 ViT-L/14 CLS features from a local weights file.

Preprocessing is EDM2's DINOv2 detector in its fast ``torch`` resize mode: uint8 (B, 3, H, W) →
float32 in [0, 255] → 224 × 224 bicubic with antialias (torch's antialiased bicubic is PIL's
filter, a = −0.5; no clamping) → / 255 → (x − ImageNet mean) / ImageNet std. Grayscale
(B, 1, H, W) is repeated to RGB first. The network runs in float32 (autocast off) on the device
of its parameters (``.to(device)``); features come back float32 on the CPU.

The weights file (``metrics.dinov2_weights``; torch hub or timm layout, see
``ldmlab.nn.dinov2``) is only ever read locally, weights-only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ldmlab.metrics.reference_stats import file_digest
from ldmlab.nn.dinov2 import load_dinov2

RESOLUTION = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VITL14 = {"depth": 24, "dim": 1024, "num_heads": 16}


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1 or 3, H, W) → float32 (B, 3, 224, 224), normalised as EDM2 feeds DINOv2."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape)
        raise ValueError(f"DINOv2 features take uint8 (B, 1 or 3, H, W), got {images.dtype} {shape}")
    x = images.expand(-1, 3, -1, -1).float()
    x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bicubic", antialias=True) / 255
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class DINOv2Features(nn.Module):
    """The ``FeatureNetwork`` "dinov2": uint8 images (B, C, H, W) → {"cls": float32 (B, dim)} on CPU.

    ``depth``, ``dim``, ``num_heads`` default to ViT-L/14 (dims {"cls": 1024}); the identity reads
    ``dinov2-vitl14@<sha256[:16] of the weights file>`` (another architecture names itself
    ``dinov2-vit-d<depth>-w<dim>-h<heads>@…``).
    """

    tag = "dinov2"

    def __init__(
        self, weights_path: str | Path, depth: int = 24, dim: int = 1024, num_heads: int = 16
    ) -> None:
        super().__init__()
        architecture = {"depth": depth, "dim": dim, "num_heads": num_heads}
        self.network = load_dinov2(weights_path, **architecture)
        name = "vitl14" if architecture == VITL14 else f"vit-d{depth}-w{dim}-h{num_heads}"
        self._identity = f"dinov2-{name}@{file_digest(weights_path)}"
        self._dim = dim

    def dims(self) -> dict[str, int]:
        return {"cls": self._dim}

    def identity(self) -> str:
        return self._identity

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        device = self.network.cls_token.device
        with torch.autocast(device.type, enabled=False):
            cls = self.network(preprocess(images.to(device)))
        return {"cls": cls.float().cpu()}
