"""The on-disk layout of the latent cache: a folder of memory-mapped shards and a manifest.

``<dir>/latents-<key[:16]>/`` holds ``shard-<s>.npy`` (rows [s·S, min((s+1)·S, N)) of the
training set, shape (rows, V, C, h, w) float32: V = 2 views, the image and its mirror image,
when the data flips, else 1), beside each a ``shard-<s>.json`` (the full key, the rows, the
shape and the sha256 of the ``.npy`` file), and ``manifest.json`` (key, shape (N, V, C, h, w),
shard size, the shards' sha256), written last as the record of a complete cache. Every file is
written atomically, so an interrupted build leaves whole shards that the next build keeps; each
opening re-checks every shard against its sidecar (key, rows, shape, sha256 of its bytes) before
it is read.

Reading maps the shards (``numpy.load(mmap_mode="r")``) on first use in each process (a
DataLoader worker opens its own maps) and copies the rows of a batch: nothing holds the whole
set in memory or on the device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldmlab.utils.atomic_output import write_file, write_text
from ldmlab.utils.file_fingerprint import file_sha256

MANIFEST = "manifest.json"


def shard_rows(shard: int, shard_size: int, num_items: int) -> range:
    """The training-set indices of shard ``shard``."""
    return range(shard * shard_size, min((shard + 1) * shard_size, num_items))


def num_shards(shard_size: int, num_items: int) -> int:
    return -(-num_items // shard_size)


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:05d}.npy"


def write_shard(folder: Path, shard: int, key: str, rows: range, latents: torch.Tensor) -> str:
    """Store ``latents`` (len(rows), V, C, h, w) float32 as shard ``shard``, then its sidecar;
    returns the file's sha256."""
    path = _shard_path(folder, shard)
    array = np.ascontiguousarray(latents.numpy().astype(np.float32, copy=False))
    write_file(path, lambda tmp: np.save(tmp, array, allow_pickle=False))
    side = {"key": key, "start": rows.start, "stop": rows.stop, "shape": list(array.shape),
            "sha256": file_sha256(path)}
    write_text(path.with_suffix(".json"), json.dumps(side, sort_keys=True))
    return side["sha256"]


def valid_shard(folder: Path, shard: int, key: str, rows: range, view_shape: tuple[int, ...]) -> str | None:
    """The shard's sha256 when its file and sidecar are whole and belong to ``key`` and ``rows``
    (the file's bytes re-hashed); None otherwise."""
    path = _shard_path(folder, shard)
    try:
        side = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    expected = {"key": key, "start": rows.start, "stop": rows.stop, "shape": [len(rows), *view_shape]}
    if any(side.get(k) != v for k, v in expected.items()) or not path.is_file():
        return None
    return side["sha256"] if file_sha256(path) == side.get("sha256") else None


def write_manifest(folder: Path, key: str, shape: tuple[int, ...], shard_size: int,
                   digests: list[str]) -> None:
    manifest = {"key": key, "shape": list(shape), "shard_size": shard_size, "shards": digests}
    write_text(folder / MANIFEST, json.dumps(manifest, indent=1))


def read_manifest(folder: Path, key: str, shape: tuple[int, ...], shard_size: int) -> dict | None:
    """The manifest when it exists and describes this key, shape and shard size; else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    same = (manifest.get("key") == key and manifest.get("shape") == list(shape)
            and manifest.get("shard_size") == shard_size
            and len(manifest.get("shards", [])) == num_shards(shard_size, shape[0]))
    return manifest if same else None


class LatentStore:
    """Read-only view of a complete cache folder: ``rows(index, view)`` → (B, C, h, w) float32.

    Picklable (the maps are opened lazily in each process), so a DataLoader worker reads its
    batch's rows itself.
    """

    def __init__(self, folder: Path, shape: tuple[int, ...], shard_size: int) -> None:
        self.folder, self.shape, self.shard_size = folder, tuple(shape), shard_size
        self._maps: dict[int, np.ndarray] = {}

    @property
    def views(self) -> int:
        return self.shape[1]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "_maps"} | {"_maps": {}}

    def _map(self, shard: int) -> np.ndarray:
        if shard not in self._maps:
            self._maps[shard] = np.load(_shard_path(self.folder, shard), mmap_mode="r", allow_pickle=False)
        return self._maps[shard]

    def row(self, index: int, view: int = 0) -> torch.Tensor:
        """Latent of training item ``index`` in view ``view`` (1: mirrored), (C, h, w)."""
        shard, offset = divmod(int(index), self.shard_size)
        return torch.from_numpy(np.array(self._map(shard)[offset, view]))

    def rows(self, index: torch.Tensor, views: list[int] | None = None) -> torch.Tensor:
        """Latents (B, C, h, w) of the items ``index`` (B,) in ``views`` (None: view 0), gathered
        with one fancy-indexed read per shard."""
        index = index.numpy()
        view = np.zeros_like(index) if views is None else np.asarray(views)
        shard, offset = np.divmod(index, self.shard_size)
        first = int(shard[0])
        if (shard == first).all():  # the common case: shards hold many batches
            return torch.from_numpy(self._map(first)[offset, view])
        out = np.empty((len(index), *self.shape[2:]), dtype=np.float32)
        for s in np.unique(shard).tolist():
            where = shard == s
            out[where] = self._map(s)[offset[where], view[where]]
        return torch.from_numpy(out)
