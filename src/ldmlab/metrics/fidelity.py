"""Quality of generated images against a real reference set, from the features of feature networks.

``FidelityEvaluator(reference, ...)`` turns images into features (``features``) and features into
metrics (``score``); ``evaluator(images, labels)`` does both. Metric keys name the network:

- Inception-v3 (offline weights, ``metrics.inception_weights``; ``InceptionFeatures``):
  ``fid_inception`` on the "pool" features of ``fid_feature_layer`` ("2048": the standard FID),
  ``kid_inception`` (+ ``_std``), ``precision_inception`` / ``recall_inception`` (k = 3) on the
  same features, ``sfid_inception`` (``sfid=true``: the ADM evaluator's spatial features), and
  ``is_inception`` (+ ``_std``) from the logits: with ``inception_score=null`` only when the weights
  carry the classifier head (the offline ones do not), ``true`` requires it (refused otherwise).
- the domain classifier (``metrics.classifier_ckpt``): ``fid_classifier``, ``kid_classifier``
  (+ ``_std``), ``precision_classifier``, ``recall_classifier``, ``is_classifier`` (+ ``_std``),
  and ``accuracy_classifier`` (fraction of samples whose argmax class is the requested label)
  when labels are given.
- DINOv2 ViT-L/14 (``fd_dinov2=true``, weights ``metrics.dinov2_weights``): ``fd_dinov2``, the
  Fréchet distance of its CLS features (EDM2).

Fréchet distances come from ``ldmlab.metrics.frechet`` (float64, symmetric eigendecompositions),
KID / precision-recall / IS from torch-fidelity's feature-level functions. Reference features are
extracted once and cached as safetensors (``ldmlab.metrics.feature_cache``). With
``reference_stats`` (an ADM reference-batch .npz) the Inception metrics compare with that file
instead: FID and sFID with its mu/sigma and mu_s/sigma_s, KID and precision/recall with the
features of its ``arr_0`` images; the other networks still use ``reference``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ldmlab.classifier.loading import ckpt_key
from ldmlab.config.types import PositiveInt
from ldmlab.metrics.classifier_features import LOGITS, ClassifierFeatures
from ldmlab.metrics.dinov2 import DINOv2Features
from ldmlab.metrics.feature_cache import extract_features, reference_features
from ldmlab.metrics.feature_metrics import inception_score, kid, precision_recall
from ldmlab.metrics.feature_network import INCEPTION_LAYER_DIMS, FeatureNetwork, InceptionFeatures
from ldmlab.metrics.frechet import GaussianStats, frechet_distance, gaussian_stats
from ldmlab.metrics.inception import has_classifier_head, inception_weights_path
from ldmlab.metrics.reference_npz import IMAGES_KEY, ReferenceNpz, read_reference_npz, write_reference_npz
from ldmlab.metrics.reference_stats import ReferenceSet, fidelity_cache_root, to_uint8
from ldmlab.utils.errors import ConfigError, FieldError, part_key

_RANGE_TOLERANCE = 1e-3
# (network tag, feature) → (metric key, name in messages): the Fréchet distances
FRECHET = {
    ("inception", "pool"): ("fid_inception", "FID"),
    ("inception", "spatial"): ("sfid_inception", "sFID"),
    ("classifier", "features"): ("fid_classifier", "FID"),
    ("dinov2", "cls"): ("fd_dinov2", "FD-DINOv2"),
}
KID_PRC_FEATURES = {"inception": "pool", "classifier": "features"}  # the features KID and PR read


@dataclass
class _Reference:
    """One network's reference side: ``name`` (content-addressed), ``count`` images behind it
    (None: unknown), ``image_count`` images to extract features from (None: none), ``images()``,
    and statistics given by a file (``stats``: feature name → Gaussian)."""

    name: str
    count: int | None
    image_count: int | None
    images: Callable[[], torch.Tensor] | None
    stats: dict[str, GaussianStats] = field(default_factory=dict)
    key: str | None = None  # the config key that sets image_count (None: the caller's num_reference)

    @classmethod
    def of_images(cls, reference: ReferenceSet) -> _Reference:
        return cls(reference.name, len(reference), len(reference), lambda: reference.images)

    @classmethod
    def of_npz(cls, npz: ReferenceNpz) -> _Reference:
        stats = {name: s for name, s in (("pool", npz.pool), ("spatial", npz.spatial)) if s is not None}
        images = npz.images if npz.image_count is not None else None
        key = part_key("metrics", "reference_stats")
        return cls(npz.name, npz.count, npz.image_count, images, stats, key)


class FidelityEvaluator:
    """FID / sFID / KID / precision-recall / IS / FD-DINOv2 of generated images against ``reference``.

    inception: compute the Inception-v3 metrics (weights from ``inception_weights``, else
        ``inception_weights_path()``), FID / KID / PR on layer ``fid_feature_layer`` ("2048",
        "768", "192", "64"); sfid: add sFID; inception_score: None = IS when the weights have the
        classifier head, True = required, False = never.
    classifier_ckpt: a ``train_classifier`` checkpoint for the classifier metrics, or None.
    fd_dinov2 / dinov2_weights: FD-DINOv2 from a local DINOv2 ViT-L/14 weights file.
    reference_stats: an ADM reference-batch .npz the Inception metrics compare with (module docstring).
    kid_subset_size/kid_subsets, isc_splits, compute_kid, compute_precision_recall: metric options.
    batch_size: images per network call; cuda: run the networks on the GPU (default: when
        available); cache_root: where reference features live (default ``$LDMLAB_CACHE/fidelity``);
        seed: torch-fidelity's ``rng_seed`` (KID subsets, IS shuffling).
    """

    def __init__(
        self,
        reference: ReferenceSet,
        inception: bool = True,
        inception_weights: str | None = None,
        fid_feature_layer: str = "2048",
        sfid: bool = False,
        inception_score: bool | None = None,
        classifier_ckpt: str | None = None,
        fd_dinov2: bool = False,
        dinov2_weights: str | None = None,
        reference_stats: str | None = None,
        kid_subset_size: PositiveInt = 1000,
        kid_subsets: PositiveInt = 100,
        isc_splits: PositiveInt = 10,
        compute_kid: bool = True,
        compute_precision_recall: bool = True,
        batch_size: PositiveInt = 64,
        cuda: bool | None = None,
        cache_root: str | None = None,
        seed: int = 2020,
    ) -> None:
        self.reference = reference
        self.kid_subset_size, self.kid_subsets, self.isc_splits = kid_subset_size, kid_subsets, isc_splits
        self.compute_kid, self.compute_precision_recall = compute_kid, compute_precision_recall
        self.batch_size, self.seed = batch_size, seed
        self.cache_root = Path(cache_root) if cache_root else fidelity_cache_root()
        device = "cuda" if (torch.cuda.is_available() if cuda is None else cuda) else "cpu"
        self.networks: list[FeatureNetwork] = []
        if inception:
            self.networks.append(
                _inception(inception_weights, fid_feature_layer, sfid, inception_score, device))
        else:
            for key, value in (("sfid", sfid), ("inception_score", inception_score),
                               ("reference_stats", reference_stats)):
                if value:
                    raise FieldError("metrics", key, f"needs the Inception network, which "
                                     f"{part_key('metrics', 'inception')}=false turns off",
                                     f"set {part_key('metrics', 'inception')}=true, or unset {{key}}")
        self.classifier: ClassifierFeatures | None = None
        if classifier_ckpt:
            self.classifier = ClassifierFeatures(classifier_ckpt, device)
            self._check_classifier_fits()
            self.networks.append(self.classifier)
        if fd_dinov2:
            self.networks.append(_dinov2(dinov2_weights, device))
        if not self.networks:
            raise FieldError(
                "metrics", "inception", "no network to compute metrics with",
                f"set {{key}}=true or give {ckpt_key()}",
            )
        self._references = {network.tag: _Reference.of_images(reference) for network in self.networks}
        if reference_stats:
            self._references["inception"] = _Reference.of_npz(read_reference_npz(reference_stats))
            self._check_npz_fits(self.networks[0])
        self._features: dict[str, dict[str, torch.Tensor]] = {}
        self._stats: dict[tuple[str, str], GaussianStats] = {}

    def features(self, images: torch.Tensor, on_image: Callable[[], None] | None = None
                 ) -> dict[str, torch.Tensor]:
        """uint8 images (B, C, H, W), C/H/W as in the reference → {"<tag>/<name>": float32 (B, dim)}
        on the CPU, for every network; ``on_image`` is called per image and network."""
        self._check_pixels(images)
        return {f"{network.tag}/{name}": rows for network in self.networks
                for name, rows in extract_features(network, images, self.batch_size, on_image).items()}

    def score(self, features: dict[str, torch.Tensor],
              labels: torch.Tensor | None = None) -> dict[str, float]:
        """Metrics (module docstring) of the features of ALL generated images (``features()``'s
        keys, rows in sample order); labels: (N,) requested classes, for ``accuracy_classifier``."""
        count = self._check_features(features)
        self.check_counts(count)
        score_labels = self.classifier is not None and labels is not None
        if score_labels:
            self._check_labels(labels, count)
        results: dict[str, float] = {}
        for network in self.networks:
            own = {name: features[f"{network.tag}/{name}"] for name in network.dims()}
            results |= self._scores(network, own)
        if score_labels:
            predicted = features[f"{self.classifier.tag}/{LOGITS}"].argmax(1)
            results["accuracy_classifier"] = (predicted == labels.cpu()).float().mean().item()
        broken = {key: value for key, value in results.items() if not math.isfinite(value)}
        if broken:
            raise FloatingPointError(f"metrics are not finite: {broken}; check the generated images")
        return results

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 on_image: Callable[[], None] | None = None) -> dict[str, float]:
        """images: (N, C, H, W) in [-1, 1], C/H/W as in the reference; labels: (N,) requested classes
        (used for ``accuracy_classifier``); on_image: called per generated image a feature network
        reads (N × ``len(self.networks)`` calls). ``score(features(to_uint8(images)), labels)``."""
        self._check_images(images)
        self.check_counts(len(images))
        if self.classifier is not None and labels is not None:
            self._check_labels(labels, len(images))
        return self.score(self.features(to_uint8(images), on_image), labels)

    def provenance(self) -> dict[str, int | str]:
        """``num_reference``: images behind the first network's reference (0: unknown, an .npz
        without ``num_images`` or ``arr_0``); ``reference``: the references' names;
        ``feature_networks``: each network's identity and the features it reads."""
        first = self._references[self.networks[0].tag]
        names = dict.fromkeys(self._references[network.tag].name for network in self.networks)
        return {
            "num_reference": first.count or 0,
            "reference": "; ".join(names),
            "feature_networks": "; ".join(f"{n.identity()}:{'+'.join(n.dims())}" for n in self.networks),
        }

    def metric_names(self, labelled: bool) -> list[str]:
        """The metrics a call returns (spreads ``*_std`` aside); ``labelled``: called with labels."""
        names = []
        for network in self.networks:
            dims = network.dims()
            names += [FRECHET[network.tag, name][0] for name in dims if (network.tag, name) in FRECHET]
            tag = network.tag
            if tag in KID_PRC_FEATURES:
                names += [f"kid_{tag}"] if self.compute_kid else []
                names += [f"precision_{tag}", f"recall_{tag}"] if self.compute_precision_recall else []
            names += [f"is_{tag}"] if LOGITS in dims else []
        return names + (["accuracy_classifier"] if self.classifier is not None and labelled else [])

    def write_reference_npz(self, path: str | Path, with_images: bool = False) -> Path:
        """The reference set's Inception statistics in the ADM layout (``reference_npz``): mu/sigma
        (2048-d pool_3), mu_s/sigma_s (spatial) and, ``with_images``, the images as ``arr_0``."""
        network = self.networks[0]
        if not isinstance(network, InceptionFeatures) or network.layer != "2048":
            raise FieldError("metrics", "fid_feature_layer", "ADM reference statistics are of the 2048-d "
                             "Inception pool_3 features", "set metrics.inception=true {key}=2048 "
                             "(metrics=paper)")
        if not network.spatial:
            raise FieldError("metrics", "sfid", "ADM reference statistics hold the spatial ones (mu_s, "
                             "sigma_s) too", "set {key}=true (metrics=paper)")
        reference = _Reference.of_images(self.reference)
        features = reference_features(network, reference.name, reference.image_count, reference.images,
                                      self.cache_root, self.batch_size)
        pool, spatial = gaussian_stats(features["pool"]), gaussian_stats(features["spatial"])
        images = self.reference.images if with_images else None
        return write_reference_npz(path, pool, spatial, images, len(self.reference))

    def check_counts(self, num_samples: int, samples_key: str | None = None,
                     reference_key: str | None = None) -> None:
        """Raise ConfigError unless ``num_samples`` generated images (and the references) fit every
        metric: the Fréchet distances' feature dimensions, ``kid_subset_size``, ``isc_splits``. The
        keys name the counts (default: the metrics' ``num_samples`` / ``num_reference``)."""
        samples_key = samples_key or part_key("metrics", "num_samples")
        reference_key = reference_key or part_key("metrics", "num_reference")
        kid_counts = [num_samples]
        for network in self.networks:
            reference = self._references[network.tag]
            ref_key = reference.key or reference_key
            for name, dim in network.dims().items():
                if (network.tag, name) not in FRECHET:
                    continue
                counts = {samples_key: num_samples}
                if name not in reference.stats:
                    counts[ref_key] = reference.image_count
                for key, count in counts.items():
                    if count <= dim:
                        raise ConfigError(
                            key, f"{FRECHET[network.tag, name][1]} on {dim}-d {network.tag} features needs "
                            f"more than {dim} images, got {count} (the covariance would be rank-deficient)",
                            f"{key}={dim + 1}; or " + _fewer_features_fix(network.tag, name, dim, count),
                        )
            if network.tag in KID_PRC_FEATURES and self.compute_kid:
                kid_counts.append(reference.image_count)
        smallest = min(kid_counts)
        if len(kid_counts) > 1 and not 2 <= self.kid_subset_size <= smallest:
            raise FieldError(
                "metrics", "kid_subset_size", f"{self.kid_subset_size} does not fit {num_samples} generated "
                f"and {min(kid_counts[1:])} reference images (between 2 and {smallest})",
                f"{{key}}={smallest}" if smallest >= 2 else f"raise {samples_key} above 1",
            )
        if any(LOGITS in n.dims() for n in self.networks) and not 1 <= self.isc_splits <= num_samples:
            raise FieldError(
                "metrics", "isc_splits", f"{self.isc_splits} splits of {num_samples} images",
                f"{{key}}={min(max(self.isc_splits, 1), num_samples)}",
            )

    def _scores(self, network: FeatureNetwork, generated: dict[str, torch.Tensor]) -> dict[str, float]:
        tag, out = network.tag, {}
        for name, rows in generated.items():
            if (tag, name) in FRECHET:
                reference = self._reference_stats(network, name)
                out[FRECHET[tag, name][0]] = frechet_distance(gaussian_stats(rows), reference)
        main = KID_PRC_FEATURES.get(tag)
        if main and (self.compute_kid or self.compute_precision_recall):
            reference = self._reference_features(network)[main]
            if self.compute_kid:
                out[f"kid_{tag}"], out[f"kid_{tag}_std"] = kid(
                    generated[main], reference, self.kid_subset_size, self.kid_subsets, self.seed)
            if self.compute_precision_recall:
                out[f"precision_{tag}"], out[f"recall_{tag}"] = precision_recall(generated[main], reference)
        if LOGITS in generated:
            out[f"is_{tag}"], out[f"is_{tag}_std"] = inception_score(
                generated[LOGITS], self.isc_splits, self.seed)
        return out

    def _reference_features(self, network: FeatureNetwork) -> dict[str, torch.Tensor]:
        if network.tag not in self._features:
            reference = self._references[network.tag]
            self._features[network.tag] = reference_features(
                network, reference.name, reference.image_count, reference.images, self.cache_root,
                self.batch_size)
        return self._features[network.tag]

    def _reference_stats(self, network: FeatureNetwork, name: str) -> GaussianStats:
        key = (network.tag, name)
        if key not in self._stats:
            given = self._references[network.tag].stats.get(name)
            self._stats[key] = given if given is not None else gaussian_stats(
                self._reference_features(network)[name])
        return self._stats[key]

    def _check_npz_fits(self, network: InceptionFeatures) -> None:
        """Before any sampling: the .npz supports every Inception metric asked for."""
        reference = self._references["inception"]
        dims = network.dims()
        for name in ("pool", "spatial"):
            if name not in dims:
                continue
            given = reference.stats.get(name)
            if given is None and reference.images is None:
                keys = "mu, sigma" if name == "pool" else "mu_s, sigma_s"
                raise FieldError("metrics", "reference_stats", f"{reference.name} has neither {keys} nor "
                                 f"{IMAGES_KEY} images for {FRECHET['inception', name][1]}",
                                 "use a reference batch with them, or set {key}=null")
            if given is not None and given.dim != dims[name]:
                pool = name == "pool"
                raise FieldError("metrics", "fid_feature_layer" if pool else "reference_stats",
                                 f"{reference.name} holds {given.dim}-d {name} statistics, the Inception "
                                 f"{name} features are {dims[name]}-d", "set {key}=2048" if pool else
                                 "use an ADM reference batch (mu_s of 2023 spatial features)")
        wanted = [key for key, on in (("compute_kid", self.compute_kid),
                                      ("compute_precision_recall", self.compute_precision_recall)) if on]
        if wanted and reference.images is None:
            raise FieldError("metrics", "reference_stats", f"{reference.name} has no {IMAGES_KEY} images: "
                             "KID and precision/recall need reference features, not only statistics",
                             "use a reference batch with arr_0, or set "
                             + " ".join(part_key("metrics", key) + "=false" for key in wanted))

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

    def _check_shape(self, images: torch.Tensor) -> None:
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

    def _check_pixels(self, images: torch.Tensor) -> None:
        if not torch.is_tensor(images) or images.dim() != 4 or images.dtype != torch.uint8:
            raise ConfigError("images", f"expected uint8 (B, C, H, W), got {_describe(images)}",
                              "pass to_uint8(samples in [-1, 1])")
        self._check_shape(images)

    def _check_images(self, images: torch.Tensor) -> None:
        if not torch.is_tensor(images) or images.dim() != 4 or not images.is_floating_point():
            raise ConfigError("images", f"expected float (N, C, H, W) in [-1, 1], got {_describe(images)}",
                              "pass decoded samples as a float tensor")
        self._check_shape(images)
        if not torch.isfinite(images).all():
            raise ConfigError("images", "contain NaN or Inf", "check the sampler and decoder for divergence")
        low, high = images.min().item(), images.max().item()
        if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ConfigError("images", f"values span [{low:.3g}, {high:.3g}], outside [-1, 1]",
                              "map samples to [-1, 1] and clamp them (x.clamp(-1, 1))")

    def _check_features(self, features: dict[str, torch.Tensor]) -> int:
        """The row count shared by every feature the networks need (raises if one is missing)."""
        wanted = {f"{n.tag}/{name}": dim for n in self.networks for name, dim in n.dims().items()}
        missing = sorted(wanted.keys() - features.keys())
        shapes = {key: tuple(features[key].shape) for key in wanted.keys() & features.keys()}
        counts = {shape[0] for shape in shapes.values()}
        wrong = {key: shape for key, shape in shapes.items() if shape[1:] != (wanted[key],)}
        if missing or wrong or len(counts) != 1:
            raise ConfigError("features", f"expected {wanted} with one row count, missing {missing}, "
                              f"shapes {shapes}", "pass the evaluator's features() of all generated images")
        return counts.pop()

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


def _inception(weights: str | None, layer: str, sfid: bool, inception_score: bool | None,
               device: str) -> InceptionFeatures:
    path = inception_weights_path(weights)
    head = has_classifier_head(path)
    if inception_score and not head:
        raise FieldError(
            "metrics", "inception_weights", f"the Inception weights ({weights or 'the offline conversion'}) "
            f"have no classifier head, which {part_key('metrics', 'inception_score')}=true needs",
            "set {key} to torch-fidelity's weights-inception-2015-12-05-6726825d.pth (it has the head), "
            f"or {part_key('metrics', 'inception_score')}=null to omit the Inception Score",
        )
    logits = head if inception_score is None else inception_score
    return InceptionFeatures(path, str(layer), spatial=sfid, logits=logits, device=device)


def _dinov2(weights: str | None, device: str) -> DINOv2Features:
    if not weights or not Path(weights).expanduser().is_file():
        raise FieldError(
            "metrics", "dinov2_weights", f"FD-DINOv2 ({part_key('metrics', 'fd_dinov2')}=true) needs a local "
            f"DINOv2 ViT-L/14 weights file, {f'{weights} does not exist' if weights else 'none is given'}",
            "set {key} to a timm or torch-hub ViT-L/14 state dict, or "
            f"{part_key('metrics', 'fd_dinov2')}=false",
        )
    return DINOv2Features(Path(weights).expanduser()).to(device)


def _fewer_features_fix(tag: str, name: str, dim: int, count: int) -> str:
    """How to make a Fréchet distance on ``dim``-d features well-posed with ``count`` images."""
    more = f"evaluate more than {dim} images"
    if name == "spatial":
        return f"{more}, or set {part_key('metrics', 'sfid')}=false"
    if tag == "dinov2":
        return f"{more}, or set {part_key('metrics', 'fd_dinov2')}=false"
    if tag == "classifier":
        return f"{more}, or use a classifier with a smaller {part_key('classifier', 'feature_dim')}"
    smaller = [layer for layer, width in INCEPTION_LAYER_DIMS.items() if width < count]
    return f"{more}, or set {part_key('metrics', 'fid_feature_layer')}={smaller[-1]}" if smaller else more


def _describe(value: object) -> str:
    return f"{value.dtype} {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
