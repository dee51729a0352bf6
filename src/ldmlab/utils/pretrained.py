"""Resolve pretrained weights without assuming internet access.

Order (docs/architecture.md): explicit path from the config → the project's cache dir → conversion
from an offline package that is installed → the standard download. Whatever is obtained
from a conversion or download is written to the cache as safetensors, atomically, so the
next call is a cache hit. User-supplied files are only ever read safely
(safetensors, or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file, save_file

from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.errors import ConfigError, part_key
from ldmlab.utils.torch_files import refusal_reason

StateDict = dict[str, torch.Tensor]


class WeightsUnavailableError(RuntimeError):
    """No source could provide the requested pretrained weights."""


class OfflineSourceMissing(Exception):
    """Raised by a converter when its offline package is not installed."""


class UnsafeWeightsFile(Exception):
    """A downloaded (or planted) weights file that the weights-only loader refuses."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def cache_dir() -> Path:
    """``$LDMLAB_CACHE`` or ``~/.cache/ldmlab``."""
    return Path(os.environ.get("LDMLAB_CACHE", Path.home() / ".cache" / "ldmlab")).expanduser()


@dataclass(frozen=True)
class WeightSource:
    """How to obtain one set of weights.

    name: cache file stem, e.g. ``"lpips_vgg16"``.
    convert_offline: builds the state dict from an installed offline package, or raises
        ``OfflineSourceMissing``.
    download: fetches the state dict the standard way (needs internet), or None.
    part, field: the part and its field holding the explicit path (errors name its config key).
    fix: one sentence telling the user how to make the weights available (``{key}``: that key).
    """

    name: str
    convert_offline: Callable[[], StateDict] | None
    download: Callable[[], StateDict] | None
    part: str
    field: str
    fix: str

    @property
    def config_key(self) -> str:
        return part_key(self.part, self.field)

    @property
    def fix_text(self) -> str:
        return self.fix.replace("{key}", self.config_key)


def load_state_dict_file(path: str | Path) -> StateDict:
    """Load a user-supplied state dict safely (safetensors or weights-only pickle); anything
    but a dict of named tensors raises ``ValueError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return _named_tensors(torch.load(path, map_location="cpu", weights_only=True))


def hub_state_dict(url: str) -> StateDict:
    """The state dict at ``url`` through torch hub's download cache
    (``$TORCH_HOME/hub/checkpoints/<file name of url>``), read weights-only: a cached file that
    is not a dict of named tensors (e.g. a planted pickle) raises ``UnsafeWeightsFile``; a
    failed download raises ``OSError``. Never call torchvision's ``weights.get_state_dict`` or
    a model builder with ``weights=``: they unpickle that same cache file with code allowed."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the weights-only loader refuses, the file is at fault
        raise UnsafeWeightsFile(path, refusal_reason(path, err)) from None
    try:
        return _named_tensors(state)
    except ValueError as err:
        raise UnsafeWeightsFile(path, str(err)) from None


def _named_tensors(state: object) -> StateDict:
    """``state`` (or its ``"state_dict"`` entry) if it is a dict of named tensors, else ``ValueError``."""
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()
    ):
        raise ValueError(f"holds a {type(state).__name__}, not a dict of named tensors")
    return state


def save_state_dict_atomic(state: StateDict, path: Path) -> None:
    """Write ``state`` as safetensors via a temporary file + rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, lambda tmp: save_file({k: v.contiguous() for k, v in state.items()}, str(tmp)))


def resolve_weights(source: WeightSource, explicit_path: str | Path | None = None) -> StateDict:
    """Return the state dict for ``source``, trying each origin in order."""
    if explicit_path:
        try:
            return load_state_dict_file(explicit_path)
        except FileNotFoundError:
            raise WeightsUnavailableError(
                f"{source.config_key}: {explicit_path} does not exist. Fix: point it at a .safetensors/.pt "
                f"state dict, or use the cache (and offline sources): {source.config_key}=null"
            ) from None
        except Exception as err:  # noqa: BLE001 - whatever the safe loaders refuse, the file is at fault
            raise ConfigError(
                source.config_key, f"{explicit_path} is not a readable weights-only state dict "
                f"({refusal_reason(explicit_path, err)})", "point it at a .safetensors/.pt state dict "
                f"of tensors, or use the cache: {source.config_key}=null",
            ) from None
    cached = cache_dir() / f"{source.name}.safetensors"
    if cached.is_file():
        return load_file(str(cached))
    errors: list[str] = []
    for origin, fetch in (("offline package", source.convert_offline), ("download", source.download)):
        if fetch is None:
            continue
        try:
            state = fetch()
        except OfflineSourceMissing as err:
            errors.append(f"{origin}: {err}")
            continue
        except OSError as err:  # network failures surface as URLError/OSError
            errors.append(f"{origin}: {err}")
            continue
        except UnsafeWeightsFile as err:
            raise ConfigError(source.config_key, f"{err.path} is not a weights-only state dict "
                              f"({err.reason}); refusing to load it", f"delete {err.path}. {source.fix_text}",
                              ) from None
        save_state_dict_atomic(state, cached)
        return state
    raise WeightsUnavailableError(
        f"{source.config_key}: pretrained weights '{source.name}' unavailable (tried {source.config_key}, "
        f"cache {cached}, {'; '.join(errors) or 'no other source'}). Fix: {source.fix_text}"
    )
