"""Features of a set of images, extracted in batches, and reference features cached on disk.

A reference's features are stored one file per feature as safetensors (tensors only: reading one
runs no code) at ``<cache_root>/<reference name>-<network identity>-<feature>.safetensors``;
the reference name holds the hash of its pixels (or of its .npz file) and the identity the hash
of the network's weights, so a file is valid for exactly one (images, network, weights, feature).
A file that is missing, unreadable or of the wrong shape is recomputed and rewritten atomically.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ldmlab.metrics.feature_network import FeatureNetwork
from ldmlab.utils.atomic_output import write_file

_KEY = "features"


def extract_features(network: FeatureNetwork, images: torch.Tensor, batch_size: int,
                     on_image: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """``network`` on uint8 images (N, 1|3, H, W), ``batch_size`` at a time (grayscale repeated to
    RGB) → {name: float32 (N, dim)}; ``on_image`` is called once per image."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in network.dims()}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].expand(-1, 3, -1, -1)
        for name, rows in network(batch).items():
            parts[name].append(rows)
        if on_image is not None:
            for _ in range(len(batch)):
                on_image()
    return {name: torch.cat(rows) for name, rows in parts.items()}


def cache_path(cache_root: Path, reference_name: str, network: FeatureNetwork, feature: str) -> Path:
    identity = re.sub(r"[^A-Za-z0-9._-]+", "_", network.identity())
    return cache_root / f"{reference_name}-{identity}-{feature}.safetensors"


def _read(path: Path, shape: tuple[int, int]) -> torch.Tensor | None:
    try:
        rows = load_file(path)[_KEY]
    except (OSError, SafetensorError, KeyError):
        return None
    return rows if tuple(rows.shape) == shape and rows.dtype == torch.float32 else None


def reference_features(network: FeatureNetwork, reference_name: str, count: int,
                       images: Callable[[], torch.Tensor], cache_root: Path,
                       batch_size: int) -> dict[str, torch.Tensor]:
    """All of ``network``'s features of the ``count`` reference images ``images()`` (called only
    on a cache miss), read from ``cache_root`` or extracted and written there."""
    dims = network.dims()
    paths = {name: cache_path(cache_root, reference_name, network, name) for name in dims}
    cached = {name: _read(path, (count, dims[name])) for name, path in paths.items()}
    if all(rows is not None for rows in cached.values()):
        return cached
    features = extract_features(network, images(), batch_size)
    cache_root.mkdir(parents=True, exist_ok=True)
    for name, rows in features.items():
        if cached[name] is None:
            write_file(paths[name], lambda tmp, rows=rows: save_file({_KEY: rows.contiguous()}, str(tmp)))
    return features
