"""DINOv2Features: EDM2's preprocessing written out, the FeatureNetwork surface, and FD-DINOv2 on
its features against the closed-form Fréchet distance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import ldmlab.metrics.dinov2 as dinov2_features
from ldmlab.metrics.dinov2 import IMAGENET_MEAN, IMAGENET_STD, DINOv2Features, preprocess
from ldmlab.metrics.frechet import frechet_distance, gaussian_stats
from ldmlab.metrics.reference_stats import file_digest
from ldmlab.nn.dinov2 import DINOv2
from ldmlab.utils.errors import FieldError
from tests.unit.nn.test_dinov2 import SMALL, randomised, save_hub, save_timm


def antialiased_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's antialiased bicubic resize (PIL's filter, a = −0.5): output i
    is centred at (i + ½)·s, s = n_in / n_out; the kernel is stretched by max(s, 1), cut at the
    edges and renormalised."""
    def cubic(t: float, a: float = -0.5) -> float:
        t = abs(t)
        if t >= 2:
            return 0.0
        return ((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1 else a * (t**3 - 5 * t**2 + 8 * t - 4)
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        first = max(int(centre - 2 * stretch + 0.5), 0)
        last = min(int(centre + 2 * stretch + 0.5), n_in)
        row = np.array([cubic((j - centre + 0.5) / stretch) for j in range(first, last)])
        weights[i, first:last] = row / row.sum()
    return weights


def edm2_preprocessed(images: torch.Tensor) -> np.ndarray:
    """uint8 (B, 3, H, W) → (B, 3, 224, 224) float64: resize (above), / 255, ImageNet mean/std."""
    h, w = images.shape[-2:]
    rows, cols = antialiased_bicubic_matrix(h, 224), antialiased_bicubic_matrix(w, 224)
    resized = rows @ images.double().numpy() @ cols.T
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    return (resized / 255 - mean) / std


@pytest.mark.parametrize("size", [(28, 28), (300, 300), (32, 48), (224, 224)])
def test_preprocessing_is_edm2s(size: tuple[int, int]) -> None:
    images = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)
    out = preprocess(images)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), edm2_preprocessed(images), rtol=0, atol=2e-4)
    if size == (224, 224):  # the resize is then the identity
        expected = (images.double() / 255 - torch.tensor(IMAGENET_MEAN).double().view(1, 3, 1, 1)) \
            / torch.tensor(IMAGENET_STD).double().view(1, 3, 1, 1)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=0, atol=1e-5)


def test_grayscale_is_repeated_to_rgb() -> None:
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(preprocess(gray), preprocess(gray.repeat(1, 3, 1, 1)))
    with pytest.raises(ValueError, match="uint8"):
        preprocess(gray.float())


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[DINOv2, Path, Path]:
    model = randomised(DINOv2(**SMALL))
    folder = tmp_path_factory.mktemp("dinov2")
    return model, save_hub(model, folder / "hub.pth"), save_timm(model, folder / "timm.safetensors")


def test_features_are_the_networks_cls_on_edm2s_input(weights: tuple[DINOv2, Path, Path]) -> None:
    model, hub, timm = weights
    network = DINOv2Features(hub, **SMALL)
    assert network.tag == "dinov2" and network.dims() == {"cls": 64}
    assert network.identity() == f"dinov2-vit-d2-w64-h4@{file_digest(hub)}"
    images = torch.randint(0, 256, (3, 3, 28, 28), dtype=torch.uint8)
    features = network(images)
    assert list(features) == ["cls"]
    assert features["cls"].dtype == torch.float32 and features["cls"].device.type == "cpu"
    with torch.no_grad():
        assert torch.equal(features["cls"], model(preprocess(images)))
    assert torch.equal(DINOv2Features(timm, **SMALL)(images)["cls"], features["cls"])
    gray = images[:, :1]
    assert torch.equal(network(gray)["cls"], network(gray.repeat(1, 3, 1, 1))["cls"])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a trainer's autocast does not reach the features
        assert torch.equal(network(images)["cls"], features["cls"])


def test_vit_l14_names_itself_by_the_file(weights: tuple[DINOv2, Path, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model, hub, _ = weights
    monkeypatch.setattr(dinov2_features, "load_dinov2", lambda path, **arch: model)  # no 1.2 GB file
    network = DINOv2Features(hub)
    assert network.identity() == f"dinov2-vitl14@{file_digest(hub)}" and network.dims() == {"cls": 1024}


def test_missing_weights_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(FieldError, match=r"^metrics\.dinov2_weights: no weights file"):
        DINOv2Features(tmp_path / "absent.pth", **SMALL)


def test_fd_dinov2_is_the_closed_form_frechet_distance(weights: tuple[DINOv2, Path, Path]) -> None:
    network = DINOv2Features(weights[1], **SMALL)
    gen = torch.Generator().manual_seed(1)

    def images(low: float, high: float) -> torch.Tensor:  # per-channel levels in [low, high] plus noise
        level = low + (high - low) * torch.rand(96, 3, 1, 1, generator=gen)
        return (level + 30 * torch.randn(96, 3, 28, 28, generator=gen)).clamp(0, 255).round().to(torch.uint8)

    real, fake = images(0, 255), images(64, 192)  # same mean level, narrower spread: FD mostly from Σ
    a, b = (network(x)["cls"].double().numpy() for x in (real, fake))
    mu_a, mu_b, sigma_a, sigma_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a + sigma_b - 2 * root)
    measured = frechet_distance(gaussian_stats(network(real)["cls"]), gaussian_stats(network(fake)["cls"]))
    assert expected > 0.1 and math.isclose(measured, expected, rel_tol=1e-6)
    assert frechet_distance(gaussian_stats(a), gaussian_stats(a)) < 1e-6 * expected
