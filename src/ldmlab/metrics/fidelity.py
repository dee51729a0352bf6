"""Quality of generated images against a real reference set, computed by torch-fidelity, offline.

``FidelityEvaluator(reference, ...)(images, labels)`` returns a flat dict of floats whose keys
name the network behind each number:

- Inception-v3 (offline weights, ``metrics.inception_weights``): ``fid_inception``,
  ``kid_inception`` (+ ``kid_inception_std``), ``precision_inception``, ``recall_inception``, and
  ``is_inception`` (+ ``_std``) only when the weights carry a classifier head (the offline ones do
  not, so no Inception Score is reported rather than a made-up one).
- the domain classifier (``metrics.classifier_ckpt``): ``fid_classifier``, ``kid_classifier``
  (+ ``_std``), ``precision_classifier``, ``recall_classifier``, ``is_classifier`` (+ ``_std``),
  and ``accuracy_classifier`` (fraction of samples whose argmax class is the requested label)
  when labels are given.

Images go to torch-fidelity as uint8 (3, H, W) tensors (grayscale repeated); the reference
set's features are cached on disk under a name that includes the extractor's weights hash, so a
second evaluation against the same reference runs the extractor on the generated images only.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_fidelity
from torch_fidelity.metric_fid import KEY_METRIC_FID
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL

from ldmlab.classifier.loading import ckpt_key
from ldmlab.config.types import PositiveInt
from ldmlab.metrics.classifier_features import (
    CLASSIFIER_EXTRACTOR,
    FEATURES,
    LOGITS,
    ClassifierFeatureExtractor,
)
from ldmlab.metrics.inception import FIDELITY_EXTRACTOR_NAME, has_classifier_head, inception_weights_path
from ldmlab.metrics.reference_stats import FidelityImages, ReferenceSet, fidelity_cache_root, to_uint8
from ldmlab.utils.errors import ConfigError, FieldError, part_key
from ldmlab.utils.torch_files import NUMPY_ARRAYS, unsafe_globals

INCEPTION_LAYER_DIMS = {"64": 64, "192": 192, "768": 768, "2048": 2048}
_RANGE_TOLERANCE = 1e-3
_RENAMES = {
    KEY_METRIC_FID: "fid_{}",
    KEY_METRIC_KID_MEAN: "kid_{}",
    KEY_METRIC_KID_STD: "kid_{}_std",
    KEY_METRIC_PRECISION: "precision_{}",
    KEY_METRIC_RECALL: "recall_{}",
    KEY_METRIC_ISC_MEAN: "is_{}",
    KEY_METRIC_ISC_STD: "is_{}_std",
}


@dataclass(frozen=True)
class FidelityNetwork:
    """One torch-fidelity feature extractor and the layers the metrics read from it.

    tag: metric key suffix ("inception" | "classifier"); extractor: torch-fidelity registry name;
    feature_layer/feature_dim: the (N, feature_dim) features for FID, KID and precision/recall;
    logits_layer: features for the Inception Score, None when the network has no classifier.
    """

    tag: str
    extractor: str
    weights_path: Path
    feature_layer: str
    feature_dim: int
    logits_layer: str | None

    @classmethod
    def inception(cls, weights_path: str | Path, feature_layer: str = "2048") -> FidelityNetwork:
        if feature_layer not in INCEPTION_LAYER_DIMS:
            raise FieldError(
                "metrics", "fid_feature_layer", f"unknown Inception layer {feature_layer!r}",
                f"use one of {sorted(INCEPTION_LAYER_DIMS, key=int)} (\"2048\" is the standard FID)",
            )
        logits = "logits_unbiased" if has_classifier_head(weights_path) else None
        dim = INCEPTION_LAYER_DIMS[feature_layer]
        return cls("inception", FIDELITY_EXTRACTOR_NAME, Path(weights_path), feature_layer, dim, logits)

    @classmethod
    def classifier(cls, ckpt_path: str | Path, feature_dim: int) -> FidelityNetwork:
        return cls("classifier", CLASSIFIER_EXTRACTOR, Path(ckpt_path), FEATURES, feature_dim, LOGITS)

    def fewer_features_fix(self, count: int) -> str:
        """How to make FID well-posed with ``count`` images."""
        more = f"evaluate more than {self.feature_dim} images"
        if self.tag == "classifier":
            return f"{more}, or use a classifier with a smaller {part_key('classifier', 'feature_dim')}"
        smaller = [layer for layer, dim in INCEPTION_LAYER_DIMS.items() if dim < count]
        return f"{more}, or set {part_key('metrics', 'fid_feature_layer')}={smaller[-1]}" if smaller else more


class FidelityEvaluator:
    """FID / KID / precision-recall / IS of generated images against ``reference``.

    inception: compute the Inception-v3 metrics (weights from ``inception_weights``, else
        ``inception_weights_path()``), on layer ``fid_feature_layer`` ("2048", "768", "192", "64").
    classifier_ckpt: a ``train_classifier`` checkpoint for the classifier metrics, or None.
    kid_subset_size/kid_subsets, isc_splits, compute_precision_recall: torch-fidelity options.
    cuda: run the extractors on the GPU (default: when available); cache_root: where reference
        features live (default ``$LDMLAB_CACHE/fidelity``); seed: torch-fidelity's ``rng_seed``.
    """

    def __init__(
        self,
        reference: ReferenceSet,
        inception: bool = True,
        inception_weights: str | None = None,
        fid_feature_layer: str = "2048",
        classifier_ckpt: str | None = None,
        kid_subset_size: PositiveInt = 1000,
        kid_subsets: PositiveInt = 100,
        isc_splits: PositiveInt = 10,
        compute_precision_recall: bool = True,
        batch_size: PositiveInt = 64,
        cuda: bool | None = None,
        cache_root: str | None = None,
        seed: int = 2020,
    ) -> None:
        self.reference = reference
        self.networks: list[FidelityNetwork] = []
        if inception:
            weights = inception_weights_path(inception_weights)
            self.networks.append(FidelityNetwork.inception(weights, str(fid_feature_layer)))
        self.classifier: ClassifierFeatureExtractor | None = None
        if classifier_ckpt:
            self.classifier = ClassifierFeatureExtractor(CLASSIFIER_EXTRACTOR, [LOGITS], classifier_ckpt)
            self._check_classifier_fits()
            feature_dim = self.classifier.network.feature_dim
            self.networks.append(FidelityNetwork.classifier(classifier_ckpt, feature_dim))
        if not self.networks:
            raise FieldError(
                "metrics", "inception", "no network to compute metrics with",
                f"set {{key}}=true or give {ckpt_key()}",
            )
        self.kid_subset_size, self.kid_subsets, self.isc_splits = kid_subset_size, kid_subsets, isc_splits
        self.compute_precision_recall, self.batch_size, self.seed = compute_precision_recall, batch_size, seed
        self.cuda = torch.cuda.is_available() if cuda is None else cuda
        self.cache_root = Path(cache_root) if cache_root else fidelity_cache_root()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 on_image: Callable[[], None] | None = None) -> dict[str, float]:
        """images: (N, C, H, W) in [-1, 1], C/H/W as in the reference; labels: (N,) requested classes
        (used for ``accuracy_classifier``); on_image: called per generated image a feature network
        reads (N × ``len(self.networks)`` calls). Returns the metrics described in the module docstring."""
        self._check_images(images)
        self.check_counts(len(images))
        score_labels = self.classifier is not None and labels is not None
        if score_labels:
            self._check_labels(labels, len(images))
        pixels = to_uint8(images)
        generated = FidelityImages(pixels)
        results: dict[str, float] = {}
        for network in self.networks:
            results |= self._torch_fidelity(network, FidelityImages(pixels, on_image))
        if score_labels:
            results["accuracy_classifier"] = self._accuracy(generated, labels.cpu())
        broken = {key: value for key, value in results.items() if not math.isfinite(value)}
        if broken:
            raise FloatingPointError(f"metrics are not finite: {broken}; check the generated images")
        return results

    def _torch_fidelity(self, network: FidelityNetwork, generated: FidelityImages) -> dict[str, float]:
        layer = network.feature_layer
        cache_name = self.reference.cache_name(network.tag, network.weights_path)
        self._check_cache(cache_name)
        metrics = torch_fidelity.calculate_metrics(
            input1=generated,
            input2=self.reference.as_fidelity_input(),
            input2_cache_name=cache_name,
            cache_root=str(self.cache_root),
            fid=True,
            kid=True,
            prc=self.compute_precision_recall,
            isc=network.logits_layer is not None,
            feature_extractor=network.extractor,
            feature_extractor_weights_path=str(network.weights_path),
            feature_layer_fid=layer,
            feature_layer_kid=layer,
            feature_layer_prc=layer,
            feature_layer_isc=network.logits_layer,
            kid_subset_size=self.kid_subset_size,
            kid_subsets=self.kid_subsets,
            isc_splits=self.isc_splits,
            batch_size=self.batch_size,
            cuda=self.cuda,
            rng_seed=self.seed,
            save_cpu_ram=True,
            verbose=False,
        )
        return {_RENAMES[key].format(network.tag): float(v) for key, v in metrics.items() if key in _RENAMES}

    def _check_cache(self, cache_name: str) -> None:
        """torch-fidelity unpickles its cached features with ``weights_only=False``: refuse any
        cached file that names more than tensors and numpy arrays."""
        for cached in sorted(self.cache_root.glob(f"{glob.escape(cache_name)}*.pt")):
            names = unsafe_globals(cached, NUMPY_ARRAYS)
            if names:
                raise FieldError(
                    "metrics", "cache_root", f"{cached} would import {', '.join(names[:4])} when "
                    "torch-fidelity unpickles it: code, not cached features",
                    "delete the file (it is recomputed); keep {key} a directory only you write",
                )

    @torch.no_grad()
    def _accuracy(self, generated: FidelityImages, labels: torch.Tensor) -> float:
        correct = 0
        for start in range(0, len(generated), self.batch_size):
            batch = generated.images[start : start + self.batch_size].expand(-1, 3, -1, -1)
            (logits,) = self.classifier(batch)
            correct += int((logits.argmax(1) == labels[start : start + len(batch)]).sum())
        return correct / len(generated)

    def _check_classifier_fits(self) -> None:
        net = self.classifier.network
        channels, height, _ = self.reference.image_shape
        if (net.in_channels, net.resolution) != (channels, height):
            raise ConfigError(
                ckpt_key(), f"the classifier was trained on {net.in_channels}-channel {net.resolution}px "
                f"images, the reference set {self.reference.name} is {channels}-channel {height}px",
                "use a classifier trained on the reference dataset at its "
                f"{part_key('data', 'resolution')}/{part_key('data', 'channels')}",
            )

    def _check_images(self, images: torch.Tensor) -> None:
        if not torch.is_tensor(images) or images.dim() != 4 or not images.is_floating_point():
            raise ConfigError("images", f"expected float (N, C, H, W) in [-1, 1], got {_describe(images)}",
                              "pass decoded samples as a float tensor")
        channels, height, width = self.reference.image_shape
        if images.shape[1] != channels:
            raise FieldError(
                "data", "channels", f"generated images have {images.shape[1]} channels, the reference set "
                f"{self.reference.name} has {channels}", "sample with the reference dataset's {key}",
            )
        if tuple(images.shape[2:]) != (height, width):
            raise FieldError(
                "data", "resolution", f"generated images are {tuple(images.shape[2:])}, the reference set "
                f"{self.reference.name} is {(height, width)}", "sample at the reference's {key}",
            )
        if not torch.isfinite(images).all():
            raise ConfigError("images", "contain NaN or Inf", "check the sampler and decoder for divergence")
        low, high = images.min().item(), images.max().item()
        if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ConfigError("images", f"values span [{low:.3g}, {high:.3g}], outside [-1, 1]",
                              "map samples to [-1, 1] and clamp them (x.clamp(-1, 1))")

    def metric_names(self, labelled: bool) -> list[str]:
        """The metrics a call returns (spreads ``*_std`` aside); ``labelled``: called with labels."""
        names = []
        for network in self.networks:
            names += [f"fid_{network.tag}", f"kid_{network.tag}"]
            if self.compute_precision_recall:
                names += [f"precision_{network.tag}", f"recall_{network.tag}"]
            names += [f"is_{network.tag}"] if network.logits_layer else []
        return names + (["accuracy_classifier"] if self.classifier is not None and labelled else [])

    def check_counts(self, num_samples: int, samples_key: str | None = None,
                     reference_key: str | None = None) -> None:
        """Raise ConfigError unless ``num_samples`` generated images (and the reference set) fit
        every metric: FID's feature dimension, ``kid_subset_size``, ``isc_splits``. The keys name
        the counts (default: the metrics' ``num_samples`` / ``num_reference``)."""
        samples_key = samples_key or part_key("metrics", "num_samples")
        reference_key = reference_key or part_key("metrics", "num_reference")
        num_reference = len(self.reference)
        for network in self.networks:
            counts = {samples_key: num_samples, reference_key: num_reference}
            for key, count in counts.items():
                if count <= network.feature_dim:
                    raise ConfigError(
                        key, f"FID on {network.feature_dim}-d {network.tag} features needs more than "
                        f"{network.feature_dim} images, got {count} (the covariance would be rank-deficient)",
                        f"{key}={network.feature_dim + 1}; or " + network.fewer_features_fix(count),
                    )
        smallest = min(num_samples, num_reference)
        if not 2 <= self.kid_subset_size <= smallest:
            raise FieldError(
                "metrics", "kid_subset_size", f"{self.kid_subset_size} does not fit {num_samples} generated "
                f"and {num_reference} reference images (between 2 and {smallest})",
                f"{{key}}={smallest}" if smallest >= 2 else f"raise {samples_key} above 1",
            )
        if any(n.logits_layer for n in self.networks) and not 1 <= self.isc_splits <= num_samples:
            raise FieldError(
                "metrics", "isc_splits", f"{self.isc_splits} splits of {num_samples} images",
                f"{{key}}={min(max(self.isc_splits, 1), num_samples)}",
            )

    def _check_labels(self, labels: torch.Tensor, num_samples: int) -> None:
        classes = self.classifier.network.num_classes
        if (
            not torch.is_tensor(labels) or labels.shape != (num_samples,) or labels.is_floating_point()
            or labels.min() < 0 or labels.max() >= classes
        ):
            raise ConfigError(
                "labels", f"expected integer ids ({num_samples},) in [0, {classes}), got {_describe(labels)}",
                "pass the class labels the samples were conditioned on",
            )


def _describe(value: object) -> str:
    return f"{value.dtype} {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
