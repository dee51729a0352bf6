"""The cache of the frozen first stage's latents of the training images (``module.latent_cache``).

Stage 2 trains on z = scale · E(x) with E frozen and deterministic (KL posterior mode, VQ code), so
E(x) of every training image is computed once, stored unscaled (``scale_by_std`` works as without
the cache) and read by training-set index: the training loader then yields latent rows instead of
images (``ldmlab.data.latent_items``). When the data flips (``data.random_flip``) both views, E(x)
and E(mirrored x), are stored and each sample reads the one its seed draws, as the pixel path would.

The cache is a folder of memory-mapped shards (``latent_store.py``) under
``<dir>/latents-<key[:16]>/``; the key is a sha256 over the first stage's weights fingerprint, the
data's content (``content_fingerprint()`` of the data module: for files, their names, sizes and
bytes), the data module's class and settings (``random_flip`` among them), the exact training
indices and the sample transforms, so new pixels under the same file names build another one.
Every rank builds and checks its own shards (shard s on rank s mod world), in parallel; rank 0
writes the manifest once all are whole. A shard that is missing, unreadable or disagrees with its
checksum is rebuilt, never trusted; whole shards of an interrupted build are kept. Data whose
module cannot tell its content is not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from ldmlab.data.base import ImageDataModule
from ldmlab.data.sample_transforms import AddCaption, AddLowRes
from ldmlab.first_stage.autoencoder import FirstStage
from ldmlab.first_stage.latent_store import (
    LatentStore,
    num_shards,
    read_manifest,
    shard_rows,
    valid_shard,
    write_manifest,
    write_shard,
)
from ldmlab.utils.distributed import all_gathered, rank_and_world

log = logging.getLogger(__name__)
PIXEL_PRESERVING = (AddCaption, AddLowRes)  # sample transforms that add keys and leave "image" as is
LOADER_ONLY = frozenset({"batch_size", "num_workers", "pin_memory", "shuffle_seed", "val_subset"})
SHARD_SIZE = 8192  # latents per shard file (ImageNet at 32×32×4, both views: 256 MiB a shard)


class LatentCache:
    """A complete cache: ``store`` reads its rows; ``summary`` is {"path", "key", "views",
    "bytes", "build_seconds": seconds, or "reused"} for the run's summary."""

    def __init__(self, store: LatentStore, key: str, build_seconds: float | None) -> None:
        self.store, self.key, self.build_seconds = store, key, build_seconds

    @property
    def path(self) -> Path:
        return self.store.folder

    def summary(self) -> dict[str, Any]:
        seconds = "reused" if self.build_seconds is None else round(self.build_seconds, 2)
        size = sum(p.stat().st_size for p in self.path.glob("shard-*.npy"))
        return {"path": str(self.path), "key": self.key, "views": self.store.views, "bytes": size,
                "build_seconds": seconds}


def unsupported_reason(first_stage: Any, datamodule: Any) -> str | None:
    """Why the latents of these training images cannot be cached exactly (None: they can)."""
    if not isinstance(first_stage, FirstStage):
        return (f"first_stage is {type(first_stage).__name__}: only a frozen ldmlab autoencoder "
                "(FirstStage) is cached; pixel space (identity) needs no cache")
    if getattr(first_stage.autoencoder.regularizer, "sample_posterior_at_eval", False):
        return "the first stage samples its posterior (sample_posterior_at_eval): E(x) is random"
    if not isinstance(datamodule, ImageDataModule):
        return f"data is {type(datamodule).__name__}, not an ImageDataModule"
    changing = [type(t).__name__ for t in datamodule.sample_transforms if not isinstance(t, PIXEL_PRESERVING)]
    if changing:
        return (f"data.sample_transforms has {', '.join(changing)}, which may change the pixels "
                f"(known to keep them: {', '.join(t.__name__ for t in PIXEL_PRESERVING)})")
    return None


def cache_key(first_stage: FirstStage, datamodule: ImageDataModule, content: str) -> str:
    """sha256 (64 hex digits) over what the cached latents depend on: the first stage's weights,
    the data's ``content`` fingerprint, the data module's class and settings (not the loader's),
    the exact training indices (after split and subset) and the sample transforms' classes and
    settings."""
    def described(obj: Any, keep: Callable[[str, Any], bool]) -> dict[str, str]:
        return {"class": f"{type(obj).__module__}.{type(obj).__qualname__}",
                **{k: repr(v) for k, v in vars(obj).items() if keep(k, v)}}

    def data_setting(name: str, value: Any) -> bool:
        return (not name.startswith("_") and name not in LOADER_ONLY
                and isinstance(value, str | int | float | bool | Path | None))

    identity = {
        "first_stage": first_stage.fingerprint(),
        "content": content,
        "data": described(datamodule, data_setting),
        "train_indices": list(datamodule.train_set.base.indices),
        "sample_transforms": [described(t, lambda k, v: True) for t in datamodule.sample_transforms],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def open_latent_cache(directory: str | Path, first_stage: Any, datamodule: Any, device: torch.device,
                      shard_size: int = SHARD_SIZE) -> LatentCache | None:
    """The cache of ``datamodule``'s training images under ``directory``, checked and completed by
    every rank (each its shards), then read-only; None, with one log line saying why, where
    caching would not be exact."""
    rank, world = rank_and_world()
    reason = unsupported_reason(first_stage, datamodule)
    content = datamodule.content_fingerprint() if reason is None else None
    if reason is None and content is None:
        reason = f"data is {type(datamodule).__name__}, whose content_fingerprint() cannot tell its content"
    if reason is not None:
        if rank == 0:
            log.info(f"latent cache off: {reason}")
        return None
    key = cache_key(first_stage, datamodule, content)
    folder = Path(directory) / f"latents-{key[:16]}"
    side = datamodule.resolution // first_stage.downsample_factor
    views = 2 if datamodule.random_flip else 1
    shape = (len(datamodule.train_set), views, first_stage.embed_dim, side, side)
    started = time.perf_counter()
    mine: dict[int, str] = {}
    built, error = 0, None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for shard in range(rank, num_shards(shard_size, shape[0]), world):
            rows = shard_rows(shard, shard_size, shape[0])
            digest = valid_shard(folder, shard, key, rows, shape[1:])
            if digest is None:
                latents = encode_views(first_stage, datamodule, rows, views, device)
                digest, built = write_shard(folder, shard, key, rows, latents), built + 1
            mine[shard] = digest
    except Exception as err:  # re-raised below, once every rank knows
        error = err
    reports = all_gathered((mine, built, None if error is None else f"{type(error).__name__}: {error}"))
    failures = [f"rank {r}: {failure}" for r, (_, _, failure) in enumerate(reports) if failure]
    if error is not None:
        raise error
    if failures:
        raise RuntimeError(f"building the latent cache {folder} failed on {'; '.join(failures)}")
    every = {shard: digest for shards, _, _ in reports for shard, digest in shards.items()}
    digests = [every[shard] for shard in sorted(every)]
    seconds = time.perf_counter() - started if sum(b for _, b, _ in reports) else None
    if rank == 0 and (read_manifest(folder, key, shape, shard_size) or {}).get("shards") != digests:
        write_manifest(folder, key, shape, shard_size, digests)
    all_gathered(None)  # the barrier: the manifest is written
    cache = LatentCache(LatentStore(folder, shape, shard_size), key, seconds)
    if rank == 0:
        how = "reused" if seconds is None else f"built in {seconds:.1f} s"
        log.info(f"latent cache: {how}, {shape[0]} latents × {views} views {tuple(shape[2:])} at {folder}")
    return cache


@torch.no_grad()
def encode_views(first_stage: FirstStage, datamodule: ImageDataModule, rows: range, views: int,
                 device: torch.device) -> torch.Tensor:
    """Unscaled E(x) (len(rows), views, embed_dim, h, w) float32 on the CPU of the training images
    ``rows`` in index order (before sample transforms, which keep the pixels); view 1 encodes the
    mirrored image."""
    loader = DataLoader(Subset(datamodule.train_set.base, rows), batch_size=datamodule.batch_size,
                        num_workers=datamodule.num_workers, generator=torch.Generator())  # not the global RNG
    out = []
    for batch in loader:
        images = batch["image"].to(device)
        encoded = [first_stage.unscaled(images.flip(-1) if view else images) for view in range(views)]
        out.append(torch.stack(encoded, dim=1).float().cpu())
    return torch.cat(out)
