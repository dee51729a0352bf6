"""An image folder → shards for ``data=streaming``:
``make shards ARGS="input=/path/to/images out=data/shards/mine resolution=256 [class_folders=true]"``.

Every image is read as RGB, centre-cropped as ADM does (``ldmlab.data.image_files.center_crop``) and
encoded once (PNG: lossless; or JPEG); ``val_size`` of them (seeded) go to ``out/val``, the rest
to ``out/train`` (``ldmlab.data.shard_format``). ``out`` is written whole or not at all: built in
a temporary folder beside it and renamed into place. A non-empty ``out`` is left alone: the same
conversion of the same files again is a no-op; anything else refuses, naming ``out``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import multiprocessing.pool
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import litdata
from omegaconf import DictConfig

from ldmlab.commands.cli import command
from ldmlab.config.settings import CommandSettings
from ldmlab.config.types import NonNegativeInt, PositiveInt
from ldmlab.data.image_files import list_images
from ldmlab.data.shard_format import MANIFEST, chunk_bytes
from ldmlab.data.shards import encode_image, split_order, write_split
from ldmlab.utils.atomic_output import write_json
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.file_fingerprint import files_fingerprint
from ldmlab.utils.output_dir import atomic_dir, checked_output_dir, foreign_files, free_name

IDENTITY = ("input_fingerprint", "resolution", "class_folders", "val_size", "seed", "format", "quality",
            "chunk_bytes")  # what the shards are a function of


class ShardsSettings(CommandSettings, total=False):
    """conf/shards.yaml."""

    input: str | None
    out: str | None
    resolution: PositiveInt
    class_folders: bool
    val_size: PositiveInt | None
    seed: NonNegativeInt
    format: Literal["png", "jpeg"]
    quality: PositiveInt
    chunk_bytes: str
    num_workers: NonNegativeInt


def shards(cfg: DictConfig) -> Path:
    root, out = _checked_input(cfg.input), _checked_out(cfg.out)
    if cfg.quality > 100:
        raise ConfigError("quality", f"must be at most 100, got {cfg.quality}", "quality=95")
    if chunk_bytes(cfg.chunk_bytes) is None:
        raise ConfigError("chunk_bytes", f"{cfg.chunk_bytes!r} is not a size in bytes", "chunk_bytes=64MB")
    files, labels, class_names = list_images(root, cfg.class_folders)
    if len(files) < 2:
        where = "in its class subfolders" if cfg.class_folders else "under it"
        raise ConfigError("input", f"{len(files)} images {where} ({root}); training and validation need at "
                          "least 2", "point it at a folder of images (with class_folders=true: one subfolder "
                          "per class)")
    val_size = max(1, len(files) // 20) if cfg.val_size is None else cfg.val_size
    if val_size >= len(files):
        raise ConfigError("val_size", f"{val_size} leaves no training images of {len(files)}",
                          f"val_size={max(1, len(files) // 20)}")
    record = {"input_fingerprint": files_fingerprint(root, files), "resolution": cfg.resolution,
              "class_folders": cfg.class_folders, "val_size": val_size, "seed": cfg.seed,
              "format": cfg.format, "quality": cfg.quality, "chunk_bytes": cfg.chunk_bytes}
    if _holds_this_conversion(out, record):
        print(f"{out} already holds these shards; nothing to do")
        return out
    train, val = split_order(len(files), val_size, cfg.seed)
    encode = functools.partial(_encode, resolution=cfg.resolution, image_format=cfg.format,
                               quality=cfg.quality)
    with atomic_dir(out, MANIFEST, "out") as tmp, _pool(cfg.num_workers) as pool:
        counts = {split: write_split(tmp / split, _map(pool, encode, [(files[i], labels[i]) for i in order]),
                                     cfg.chunk_bytes)
                  for split, order in (("train", train), ("val", val))}
        write_json(tmp / MANIFEST, {"task": "shards", "input": str(root.resolve()), **record,
                                    "class_names": list(class_names), "counts": counts,
                                    "litdata_version": litdata.__version__})
    print(f"wrote {counts['train']} training and {counts['val']} validation images ({cfg.resolution}x"
          f"{cfg.resolution} {cfg.format}, {max(len(class_names), 1)} classes) to {out}")
    return out


def _checked_input(value: str | None) -> Path:
    if not value:
        raise ConfigError("input", "is not set", "input=/path/to/images")
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ConfigError("input", f"{root} is not a folder", "point it at a folder of images")
    return root


def _checked_out(value: str | None) -> Path:
    if not value:
        raise ConfigError("out", "is not set", "out=data/shards/<name>")
    return checked_output_dir(value, "out")


def _holds_this_conversion(out: Path, record: dict) -> bool:
    """False for a missing or empty ``out``; True when it holds the conversion ``record`` describes,
    every file as written; anything else refuses (nothing in ``out`` is replaced)."""
    if not out.is_dir() or not any(out.iterdir()):
        return False
    try:
        stored = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        stored = None
    same = isinstance(stored, dict) and all(stored.get(k) == record[k] for k in IDENTITY)
    if same and not foreign_files(out, MANIFEST, limit=1):
        return True
    what = "shards of other images or settings" if isinstance(stored, dict) else "files that are not shards"
    raise ConfigError("out", f"{out} already holds {what}; it is never overwritten",
                      f"out={free_name(out)}")


def _encode(item: tuple[Path, int], resolution: int, image_format: str, quality: int) -> tuple[bytes, int]:
    path, label = item
    return encode_image(path, resolution, image_format, quality, "input"), label


@contextmanager
def _pool(num_workers: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """``num_workers`` processes (0: None, encode in this one), terminated on exit."""
    if not num_workers:
        yield None
        return
    methods = multiprocessing.get_all_start_methods()
    with multiprocessing.get_context("fork" if "fork" in methods else "spawn").Pool(num_workers) as pool:
        yield pool


def _map(pool, function, items: list) -> Iterator:
    """``function`` over ``items`` in order, in ``pool``'s processes (None: here)."""
    return map(function, items) if pool is None else pool.imap(function, items, chunksize=16)


main = command(shards, "shards", ShardsSettings)

if __name__ == "__main__":
    main()
