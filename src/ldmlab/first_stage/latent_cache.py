"""On-disk cache of the frozen first stage's latents of the training images (``module.latent_cache``).

Stage 2 trains on z = scale · E(x) with E frozen and deterministic (KL posterior mode, VQ code), so
E(x) of every training image is computed once, stored unscaled (``scale_by_std`` works as without
the cache) and looked up by training-set index (``batch["index"]``). The file
``<dir>/latents-<key>.safetensors`` holds ``latents`` (N, embed_dim, H/f, W/f) float32 and, as
metadata, the full key and the sha256 of the tensor's bytes; the key is a sha256 over the first
stage's weights fingerprint, the data's content (``content_fingerprint()`` of the data module: for
files, their names, sizes and bytes), the data module's class and settings, the exact training
indices and the sample transforms, so new pixels under the same file names rebuild it. A file that
is unreadable or disagrees with either is rebuilt, never trusted. Data whose module cannot tell its
content is not cached.
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
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from ldmlab.data.base import ImageDataModule
from ldmlab.data.sample_transforms import AddCaption, AddLowRes
from ldmlab.first_stage.autoencoder import FirstStage
from ldmlab.utils.atomic_output import write_file

log = logging.getLogger(__name__)
PIXEL_PRESERVING = (AddCaption, AddLowRes)  # sample transforms that add keys and leave "image" as is
LOADER_ONLY = frozenset({"batch_size", "num_workers", "pin_memory", "shuffle_seed", "val_subset"})


class LatentCache:
    """Unscaled latents E(x) (N, embed_dim, h, w) of the N training images, on the training device.

    ``summary``: {"path", "key", "build_seconds": seconds, or "reused"} for the run's summary.
    """

    def __init__(self, latents: torch.Tensor, path: Path, key: str, build_seconds: float | None) -> None:
        self.latents, self.path, self.key, self.build_seconds = latents, path, key, build_seconds

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        """Training-set indices (B,) (on the latents' device) → unscaled latents (B, embed_dim, h, w)."""
        return self.latents[index]

    def summary(self) -> dict[str, Any]:
        seconds = "reused" if self.build_seconds is None else round(self.build_seconds, 2)
        return {"path": str(self.path), "key": self.key, "build_seconds": seconds}


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


def open_latent_cache(directory: str | Path, first_stage: Any, datamodule: Any,
                      device: torch.device) -> LatentCache | None:
    """The cache of ``datamodule``'s training images under ``directory``, read or built (rank 0
    builds and writes it while the other DDP ranks wait, then they read it); None, with one log
    line saying why, where caching would not be exact."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    reason = unsupported_reason(first_stage, datamodule)
    content = datamodule.content_fingerprint() if reason is None else None
    if reason is None and content is None:
        reason = f"data is {type(datamodule).__name__}, whose content_fingerprint() cannot tell its content"
    if reason is not None:
        if rank == 0:
            log.info(f"latent cache off: {reason}")
        return None
    key = cache_key(first_stage, datamodule, content)
    path = Path(directory) / f"latents-{key[:16]}.safetensors"
    side = datamodule.resolution // first_stage.downsample_factor
    shape = (len(datamodule.train_set), first_stage.embed_dim, side, side)
    latents, seconds, error = None, None, None
    if rank == 0:
        try:
            latents = read_latents(path, key, shape)
            if latents is None:
                started = time.perf_counter()
                latents = encode_training_images(first_stage, datamodule, device)
                write_latents(path, key, latents)
                seconds = time.perf_counter() - started
        except Exception as err:  # re-raised below, once the other ranks know
            error = err
    if dist.is_available() and dist.is_initialized():  # the barrier: the file is complete (or failed)
        status = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(status, src=0)
        if rank != 0:
            if status[0] is not None:
                raise RuntimeError(f"rank 0 failed to build the latent cache: {status[0]}")
            latents = read_latents(path, key, shape)
            if latents is None:
                raise RuntimeError(f"the latent cache {path} that rank 0 wrote cannot be read")
    if error is not None:
        raise error
    cache = LatentCache(latents.to(device), path, key, seconds)
    if rank == 0:
        how = "reused" if seconds is None else f"built in {seconds:.1f} s"
        log.info(f"latent cache: {how}, {shape[0]} latents {tuple(shape[1:])} at {path}")
    return cache


@torch.no_grad()
def encode_training_images(first_stage: FirstStage, datamodule: ImageDataModule,
                           device: torch.device) -> torch.Tensor:
    """Unscaled E(x) (N, embed_dim, h, w) float32 on the CPU of the N training images in index
    order (the images before sample transforms, which keep the pixels)."""
    loader = DataLoader(datamodule.train_set.base, batch_size=datamodule.batch_size,
                        num_workers=datamodule.num_workers, generator=torch.Generator())  # not the global RNG
    return torch.cat([first_stage.unscaled(batch["image"].to(device)).float().cpu() for batch in loader])


def _digest(latents: torch.Tensor) -> str:
    return hashlib.sha256(memoryview(latents.contiguous().numpy()).cast("B")).hexdigest()


def read_latents(path: Path, key: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The latents stored at ``path`` if the file is complete and belongs to ``key`` (its key,
    shape, dtype and checksum agree); otherwise None (logged when a file was there)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata, latents = file.metadata() or {}, file.get_tensor("latents")
    except Exception as err:  # noqa: BLE001 - whatever is wrong with the file, it is rebuilt
        log.info(f"latent cache: {path} is unreadable ({type(err).__name__}); rebuilding it")
        return None
    if (metadata.get("key") != key or tuple(latents.shape) != shape or latents.dtype != torch.float32
            or metadata.get("sha256") != _digest(latents)):
        log.info(f"latent cache: {path} does not match this run (key, shape or checksum); rebuilding it")
        return None
    return latents


def write_latents(path: Path, key: str, latents: torch.Tensor) -> None:
    """Write atomically (``ldmlab.utils.atomic_output``: temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"key": key, "sha256": _digest(latents)}
    write_file(path, lambda tmp: save_file({"latents": latents.contiguous()}, str(tmp), metadata=metadata))
