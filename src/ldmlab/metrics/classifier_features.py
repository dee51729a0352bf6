"""The trained domain classifier as a torch-fidelity feature extractor ("ldmlab-classifier").

Importing this module registers it. torch-fidelity then computes FID/KID/PR on the classifier's
penultimate features ("features", (B, feature_dim)) and Inception Score on its logits ("logits",
(B, num_classes)) when called with ``feature_extractor="ldmlab-classifier"`` and
``feature_extractor_weights_path=<classifier checkpoint>``. The logits keep the head's bias:
``logits_unbiased`` is an Inception-v3 compatibility quirk with no meaning for this network.
"""

from __future__ import annotations

import torch
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ldmlab.classifier.loading import ckpt_key, load_classifier
from ldmlab.utils.errors import ConfigError

CLASSIFIER_EXTRACTOR = "ldmlab-classifier"
FEATURES, LOGITS = "features", "logits"


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """uint8 images (B, 3, H, W) in [0, 255], as torch-fidelity feeds them → the requested subset
    of ("features", "logits"), float32, in the order asked for.

    Inputs are mapped back to the classifier's convention: [-1, 1], and RGB averaged to one channel
    for grayscale classifiers (exact for the channel-repeated grayscale torch-fidelity receives).
    """

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs
    ) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ConfigError(ckpt_key(), "no classifier checkpoint given", f"set {ckpt_key()}")
        self.network = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, str]:
        return FEATURES, LOGITS

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return LOGITS if metric == "isc" else FEATURES

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        net = self.network
        expected = (net.resolution, net.resolution)
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != expected:
            raise ConfigError(
                ckpt_key(), f"the classifier takes uint8 (B, 3, {net.resolution}, {net.resolution}) from "
                f"torch-fidelity, got {x.dtype} {tuple(x.shape)}",
                "evaluate images at the resolution the classifier was trained on",
            )
        images = x.float() / 127.5 - 1
        if net.in_channels == 1:
            images = images.mean(dim=1, keepdim=True)
        outputs = {FEATURES: net.features(images)}
        if LOGITS in self.features_list:
            outputs[LOGITS] = net.head(outputs[FEATURES])
        return tuple(outputs[name] for name in self.features_list)


if CLASSIFIER_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierFeatureExtractor)
