"""Feature networks: uint8 images in, named float32 feature rows out; and the Inception-v3 one.

A ``FeatureNetwork`` maps uint8 images (B, 3, H, W) to ``{name: float32 (B, dim)}`` on the CPU.
Its ``tag`` suffixes the metric keys (``fid_<tag>``), ``dims()`` lists the features it returns,
and ``identity()`` names the network and its weights (content hash): it keys cached reference
features and is written next to every score.

``InceptionFeatures`` is torch-fidelity's ``FeatureExtractorInceptionV3`` (TF-compatible resize
and normalisation) with the offline weights of ``ldmlab.metrics.inception``:

- "pool": the spatially averaged features of ``layer`` — "2048" is pool_3, the standard FID
  layer; "64" / "192" / "768" are earlier and cheaper ones (a CPU preset);
- "spatial" (optional): the ADM evaluator's sFID features, TF tensor ``mixed_6/conv`` = the ReLU
  output of ``Mixed_6d.branch1x1`` (B, 192, 17, 17), its first 7 channels flattened in NHWC order
  (row, column, channel), as guided-diffusion's ``spatial[..., :7]`` reshaped per image: 2023 dims;
- "logits" (optional): the 1008-way logits without the bias (torch-fidelity's
  ``logits_unbiased``, as the ADM evaluator's Inception Score), only for weights with a
  classifier head (``has_classifier_head``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ldmlab.metrics.inception import build_feature_extractor
from ldmlab.metrics.reference_stats import file_digest
from ldmlab.utils.errors import FieldError

INCEPTION_LAYER_DIMS = {"64": 64, "192": 192, "768": 768, "2048": 2048}
INCEPTION_LOGITS = 1008
SPATIAL_CHANNELS, SPATIAL_SIZE = 7, 17
SPATIAL_DIM = SPATIAL_SIZE * SPATIAL_SIZE * SPATIAL_CHANNELS  # 2023
_POOL_NAMES = {"64": "pool-64", "192": "pool-192", "768": "pool-768", "2048": "pool3"}


@runtime_checkable
class FeatureNetwork(Protocol):
    """uint8 (B, 3, H, W) → {feature name: float32 (B, dims()[name])} on the CPU."""

    tag: str

    def dims(self) -> dict[str, int]: ...

    def identity(self) -> str: ...

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]: ...


class InceptionFeatures:
    """Inception-v3 "pool" features at ``layer``, plus "spatial" and "logits" when asked (module
    docstring); runs on ``device``. ``weights_path``: ``inception_weights_path()``'s file."""

    tag = "inception"

    def __init__(self, weights_path: str | Path, layer: str = "2048", spatial: bool = False,
                 logits: bool = False, device: str | torch.device = "cpu") -> None:
        layer = str(layer)
        if layer not in INCEPTION_LAYER_DIMS:
            raise FieldError(
                "metrics", "fid_feature_layer", f"unknown Inception layer {layer!r}",
                f"use one of {list(INCEPTION_LAYER_DIMS)} (\"2048\" is the standard FID)",
            )
        self.weights_path, self.layer, self.device = Path(weights_path), layer, torch.device(device)
        requested = [layer] + (["logits_unbiased"] if logits else [])
        if spatial and INCEPTION_LAYER_DIMS[layer] < INCEPTION_LAYER_DIMS["768"]:
            requested.append("768")  # torch-fidelity stops at the last requested layer: go past Mixed_6d
        self.extractor = build_feature_extractor(weights_path, requested).to(self.device)
        self._names = {"pool": layer} | ({"logits": "logits_unbiased"} if logits else {})
        self.spatial, self._spatial_rows = spatial, None
        if spatial:
            self.extractor.Mixed_6d.branch1x1.register_forward_hook(self._keep_spatial)

    def dims(self) -> dict[str, int]:
        dims = {"pool": INCEPTION_LAYER_DIMS[self.layer]}
        if "logits" in self._names:
            dims["logits"] = INCEPTION_LOGITS
        return dims | ({"spatial": SPATIAL_DIM} if self.spatial else {})

    def identity(self) -> str:
        return f"inception-v3/{_POOL_NAMES[self.layer]}@{file_digest(self.weights_path)}"

    def _keep_spatial(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nhwc = output[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1)  # (B, 17, 17, 7)
        self._spatial_rows = nhwc.reshape(len(output), -1).float().cpu()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self._spatial_rows = None
        outputs = self.extractor(images.to(self.device))
        returned = dict(zip(self.extractor.features_list, outputs, strict=True))
        features = {name: returned[layer].float().cpu() for name, layer in self._names.items()}
        if self.spatial:
            features["spatial"] = self._spatial_rows
        return features
