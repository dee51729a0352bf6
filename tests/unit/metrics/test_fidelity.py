"""FidelityEvaluator on real Fashion-MNIST: metric behaviour, reference cache, torch-fidelity CLI parity.

Inception runs at its cheapest layer ("64", ~80 ms per image on a busy CPU) on 65 + 65 images;
the behavioural checks use a tiny domain classifier fitted here in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from ldmlab.classifier.loading import ckpt_key
from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.metrics.classifier_features import ClassifierFeatures
from ldmlab.metrics.feature_network import InceptionFeatures
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.inception import inception_weights_path
from ldmlab.metrics.reference_stats import ReferenceSet, file_digest, to_uint8
from ldmlab.utils.errors import ConfigError
from tests.unit.data.test_content_fingerprint import image_folder, overwrite_pixels, write_images
from tests.unit.models.test_classifier import tiny_classifier_ckpt

INCEPTION_LAYER, INCEPTION_COUNT = "64", 65  # FID needs more images than feature dimensions
KID = {"kid_subset_size": 30, "kid_subsets": 10}


@pytest.fixture(scope="module")
def real(fmnist_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 400 Fashion-MNIST test images (400, 1, 32, 32) in [-1, 1] and their labels."""
    datamodule = FashionMNISTDataModule(str(fmnist_dir))
    datamodule.setup()
    items = [datamodule.test_set[i] for i in range(400)]
    return torch.stack([it["image"] for it in items]), torch.tensor([it["label"] for it in items])


@pytest.fixture(scope="module")
def classifier_ckpt(fmnist_dir, tmp_path_factory) -> Path:
    return tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)


def noisy(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + sigma * noise).clamp(-1, 1)


def uniform_noise(count: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def classifier_evaluator(images: torch.Tensor, ckpt: Path, cache: Path) -> FidelityEvaluator:
    reference = ReferenceSet.from_images("fashionmnist", "test", images)
    return FidelityEvaluator(
        reference, inception=False, classifier_ckpt=str(ckpt), cache_root=str(cache), **KID
    )


class CountImages:
    """Counts the images a feature network class processes (wraps its real ``method``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, network_class: type, method: str = "forward") -> None:
        self.images = 0
        original = getattr(network_class, method)

        def counting(network, x):
            self.images += len(x)
            return original(network, x)

        monkeypatch.setattr(network_class, method, counting)


def test_fid_is_zero_against_itself_and_grows_with_noise(real, classifier_ckpt, tmp_path):
    images = real[0][:150]
    evaluate = classifier_evaluator(images, classifier_ckpt, tmp_path)
    fid_self = evaluate(images)["fid_classifier"]
    fids = [evaluate(noisy(images, sigma))["fid_classifier"] for sigma in (0.1, 0.3, 0.6)]
    assert abs(fid_self) < 1e-3 * fids[0], (fid_self, fids)
    assert fids[0] < fids[1] < fids[2], fids


def test_progress_callback_sees_every_generated_image_once_per_network(real, classifier_ckpt, tmp_path):
    images = real[0][:150]
    evaluate, seen = classifier_evaluator(images, classifier_ckpt, tmp_path), []
    evaluate(images[:120], on_image=lambda: seen.append(1))
    assert len(seen) == 120 * len(evaluate.networks)


def test_features_gathered_in_chunks_score_as_one_call(real, classifier_ckpt, tmp_path):
    """score() of features() computed chunk by chunk (as ranks gather them) = evaluator(images)."""
    images, labels = real[0][150:300], real[1][150:300]
    evaluate = classifier_evaluator(real[0][:150], classifier_ckpt, tmp_path)
    chunks = [evaluate.features(to_uint8(images[start : start + 40])) for start in range(0, 150, 40)]
    features = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
    assert {key: tuple(rows.shape) for key, rows in features.items()} == {
        "classifier/features": (150, 16), "classifier/logits": (150, 10)}
    assert evaluate.score(features, labels) == evaluate(images, labels)
    assert evaluate.provenance() == {
        "num_reference": 150, "reference": evaluate.reference.name,
        "feature_networks": f"classifier@{file_digest(classifier_ckpt)}:features+logits",
    }
    with pytest.raises(ConfigError, match="^features: .*missing \\['classifier/logits'\\]"):
        evaluate.score({"classifier/features": features["classifier/features"]})


def test_kid_is_unbiased_near_zero_for_the_same_distribution(real, classifier_ckpt, tmp_path):
    images = real[0]
    evaluate = classifier_evaluator(images[:150], classifier_ckpt, tmp_path)
    same = evaluate(images[150:300])  # disjoint real images: KID fluctuates around 0, may be < 0
    other = evaluate(uniform_noise(150))
    assert other["kid_classifier"] > 2 * other["kid_classifier_std"] > 0
    assert abs(same["kid_classifier"]) < 0.2 * other["kid_classifier"], (same, other)
    assert abs(same["kid_classifier"]) < 3 * same["kid_classifier_std"] + 1e-6
    assert same["fid_classifier"] > 0  # FID's plug-in estimate stays biased upwards


def test_classifier_accuracy_and_inception_score(real, classifier_ckpt, tmp_path):
    images, labels = real
    evaluate = classifier_evaluator(images[:150], classifier_ckpt, tmp_path)
    scores = evaluate(images[150:300], labels[150:300])
    wrong = evaluate(images[150:300], (labels[150:300] + 1) % 10)
    noise = evaluate(uniform_noise(150))
    assert scores["accuracy_classifier"] > 0.4 > 0.2 > wrong["accuracy_classifier"], (scores, wrong)
    assert "accuracy_classifier" not in noise  # no labels, no accuracy
    assert scores["is_classifier"] > noise["is_classifier"] + 5 * noise["is_classifier_std"], (scores, noise)
    expected = {"fid", "kid", "kid_{}_std", "precision", "recall", "is", "is_{}_std", "accuracy"}
    assert set(scores) == {(k if "{}" in k else k + "_{}").format("classifier") for k in expected}


def test_reference_features_are_cached_per_weights(real, classifier_ckpt, tmp_path, monkeypatch):
    images = real[0]
    counter = CountImages(monkeypatch, ClassifierFeatures, "__call__")
    evaluate = classifier_evaluator(images[:150], classifier_ckpt, tmp_path)
    first = evaluate(images[150:250])
    assert counter.images == 250
    second = evaluate(images[150:250])
    assert counter.images == 350, "the reference set went through the classifier again"
    assert first == second
    retrained = tmp_path / "retrained.ckpt"
    checkpoint = torch.load(classifier_ckpt, weights_only=True)
    checkpoint["state_dict"]["network.head.1.bias"] += 1.0
    torch.save(checkpoint, retrained)
    classifier_evaluator(images[:150], retrained, tmp_path)(images[150:250])
    assert counter.images == 600, "other weights must not reuse the cached reference features"


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_new_pixels_under_the_same_names_recompute_the_reference_statistics(
    classifier_ckpt, tmp_path, monkeypatch, keep_mtime
):
    """An image folder's every image overwritten (same names and sizes; also with the old mtimes
    forced back): its reference features are extracted again and the statistics differ; an
    unchanged folder reuses them."""
    images, cache = tmp_path / "images", tmp_path / "cache"
    write_images(images, 48, seed=0)
    counter, generated = CountImages(monkeypatch, ClassifierFeatures, "__call__"), uniform_noise(40)

    def evaluate() -> tuple[str, dict[str, float]]:
        reference = ReferenceSet.from_datamodule(image_folder(images), "train", num_reference=40)
        evaluator = FidelityEvaluator(reference, inception=False, classifier_ckpt=str(classifier_ckpt),
                                      cache_root=str(cache), **KID)
        return reference.name, evaluator(generated)

    name, first = evaluate()
    assert counter.images == 80
    assert evaluate() == (name, first) and counter.images == 120  # unchanged: the cached reference
    overwrite_pixels(images, seed=1, keep_mtime=keep_mtime)
    new_name, changed = evaluate()
    assert counter.images == 200, "the new reference images must go through the classifier"
    assert new_name != name and changed["fid_classifier"] != first["fid_classifier"]
    cached = sorted(cache.glob("*-classifier_*-features.safetensors"))
    assert len(cached) == 2 and cached[0].read_bytes() != cached[1].read_bytes()


def test_bad_inputs_name_the_key(real, classifier_ckpt, tmp_path):
    images, labels = real
    evaluate = classifier_evaluator(images[:100], classifier_ckpt, tmp_path)
    cases = [
        (images[:50] * 1.5, "images: values span"),
        (images[:50].clone().index_fill_(0, torch.tensor([3]), float("nan")), "images: contain NaN"),
        (images[:50].expand(-1, 3, -1, -1), "data.channels"),
        (images[:50, :, :28, :28], "data.resolution"),
        (images[:50].to(torch.uint8), "images: expected float"),
        (images[:16], "metrics.num_samples: FID on 16-d classifier features"),
        (images[:20], "metrics.kid_subset_size"),
    ]
    for bad, message in cases:
        with pytest.raises(ConfigError, match=message):
            evaluate(bad)
    with pytest.raises(ConfigError, match="labels"):
        evaluate(images[:50], labels[:49])
    with pytest.raises(ConfigError, match="labels"):
        evaluate(images[:50], labels[:50] + 10)
    with pytest.raises(ConfigError, match="metrics.num_reference"):
        classifier_evaluator(images[:16], classifier_ckpt, tmp_path)(images[:50])
    rgb_reference = ReferenceSet.from_images("rgb", "test", images[:100].expand(-1, 3, -1, -1))
    with pytest.raises(ConfigError, match=ckpt_key()):
        FidelityEvaluator(rgb_reference, inception=False, classifier_ckpt=str(classifier_ckpt))
    with pytest.raises(ConfigError, match="metrics.inception"):
        FidelityEvaluator(evaluate.reference, inception=False)
    with pytest.raises(ConfigError, match="metrics.fid_feature_layer"):
        InceptionFeatures(inception_weights_path(), "1000")


def test_reference_set_from_datamodule_has_a_stable_name(fmnist_dir):
    datamodule = FashionMNISTDataModule(str(fmnist_dir))
    first = ReferenceSet.from_datamodule(datamodule, "test", num_reference=64)
    again = ReferenceSet.from_datamodule(FashionMNISTDataModule(str(fmnist_dir)), "test", num_reference=64)
    assert first.name == again.name and first.name.startswith("fashionmnist-test-32px-1ch-n64-")
    assert first.images.dtype == torch.uint8 and first.image_shape == (1, 32, 32)
    assert ReferenceSet.from_datamodule(datamodule, "val", num_reference=64).name != first.name
    with pytest.raises(ConfigError, match="metrics.num_reference"):
        ReferenceSet.from_datamodule(datamodule, "test", num_reference=10001)


@pytest.fixture(scope="module")
def inception_run(real, tmp_path_factory):
    """One Inception evaluation of 65 noisy test images against 65 others, twice, counting images."""
    images = real[0]
    reference = ReferenceSet.from_images("fashionmnist", "test", images[:INCEPTION_COUNT])
    generated = noisy(images[INCEPTION_COUNT : 2 * INCEPTION_COUNT], 0.2)
    cache = tmp_path_factory.mktemp("fidelity_cache")
    evaluate = FidelityEvaluator(reference, fid_feature_layer=INCEPTION_LAYER, cache_root=str(cache), **KID)
    with pytest.MonkeyPatch.context() as patch:
        counter = CountImages(patch, FeatureExtractorInceptionV3)
        first = evaluate(generated)
        counts = [counter.images]
        second = evaluate(generated)
        counts.append(counter.images)
    return {"evaluate": evaluate, "generated": generated, "first": first, "second": second, "counts": counts}


def test_inception_metrics_without_inception_score_offline(inception_run):
    assert set(inception_run["first"]) == {
        "fid_inception", "kid_inception", "kid_inception_std", "precision_inception", "recall_inception",
    }
    assert inception_run["first"]["fid_inception"] > 0


def test_inception_reference_features_come_from_the_cache(inception_run):
    assert inception_run["counts"] == [2 * INCEPTION_COUNT, 3 * INCEPTION_COUNT]
    assert inception_run["first"] == inception_run["second"]


def _save_pngs(images_uint8: torch.Tensor, folder: Path) -> Path:
    folder.mkdir()
    for index, image in enumerate(images_uint8):
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{index:04d}.png")
    return folder


def test_matches_the_torch_fidelity_cli_on_saved_pngs(inception_run, tmp_path):
    """The CLI reads both image sets back from PNGs and extracts their features itself."""
    evaluate = inception_run["evaluate"]
    generated = _save_pngs(to_uint8(inception_run["generated"]), tmp_path / "generated")
    reference = _save_pngs(evaluate.reference.images, tmp_path / "reference")
    weights = evaluate.networks[0].weights_path
    command = [
        str(Path(sys.executable).parent / "fidelity"), "--input1", str(generated), "--input2", str(reference),
        "--fid", "--kid", "--prc", "--feature-extractor", "inception-v3-compat",
        "--feature-layer-fid", INCEPTION_LAYER, "--feature-layer-kid", INCEPTION_LAYER,
        "--feature-layer-prc", INCEPTION_LAYER, "--feature-extractor-weights-path", str(weights),
        "--kid-subset-size", str(KID["kid_subset_size"]), "--kid-subsets", str(KID["kid_subsets"]),
        "--no-cache", "--cpu", "--json", "--save-cpu-ram", "--silent",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    cli = json.loads(out.stdout[out.stdout.index("{") :])
    ours = inception_run["first"]
    assert ours["fid_inception"] == pytest.approx(cli["frechet_inception_distance"], rel=1e-5)
    close = {"rel": 1e-4, "abs": 1e-7}
    assert ours["kid_inception"] == pytest.approx(cli["kernel_inception_distance_mean"], **close)
    assert ours["kid_inception_std"] == pytest.approx(cli["kernel_inception_distance_std"], **close)
    assert ours["precision_inception"] == cli["precision"]
    assert ours["recall_inception"] == cli["recall"]


def test_fid_refuses_fewer_samples_than_feature_dims(inception_run):
    evaluate = inception_run["evaluate"]
    with pytest.raises(ConfigError, match="metrics.num_samples.*64-d inception.*got 64"):
        evaluate(inception_run["generated"][:64])
    standard = FidelityEvaluator(evaluate.reference, fid_feature_layer="2048")
    with pytest.raises(ConfigError, match="num_samples: FID on 2048-d.*metrics.fid_feature_layer=768"):
        standard.check_counts(1000)
