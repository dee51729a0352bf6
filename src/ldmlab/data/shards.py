"""An image folder as shards (``make shards``): ADM's centre crop, encoded once, in litdata chunks.

The pieces ``ldmlab.commands.shards`` puts together; the layout is ``ldmlab.data.shard_format``'s.
Images are shuffled (seeded) before they are written: litdata shuffles chunks and items within a
chunk, so a folder written in file order (one class after another) would give one-class batches.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ldmlab.data.image_files import center_crop
from ldmlab.data.shard_format import FORMATS, BinaryWriter
from ldmlab.utils.errors import DataError
from ldmlab.utils.images import open_image


def split_order(n: int, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) positions of ``n`` items: a permutation seeded by ``seed``, its first
    ``val_size`` held out for validation."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[val_size:], order[:val_size]


def encode_image(path: Path, resolution: int, image_format: str, quality: int, key: str) -> bytes:
    """``path`` as RGB, ``center_crop``-ed and encoded (``image_format``: a ``FORMATS`` key;
    ``quality``: JPEG's). An unreadable file is a ``DataError`` naming ``key`` (one line, also from
    a worker process)."""
    try:
        with open_image(path) as img:
            array = center_crop(img.convert("RGB"), resolution)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(key, f"cannot read image {path} ({err})", "remove or fix the corrupt file") from None
    buffer = io.BytesIO()
    options = {"quality": quality} if image_format == "jpeg" else {}
    Image.fromarray(array).save(buffer, format=FORMATS[image_format], **options)
    return buffer.getvalue()


def write_split(folder: Path, items: Iterable[tuple[bytes, int]], chunk_bytes: str) -> int:
    """Write ``(encoded image, label)`` items as one litdata dataset in ``folder`` (chunks of at
    most ``chunk_bytes``, e.g. "64MB"), each with its position as ``index``; returns the count."""
    folder.mkdir(parents=True)
    writer = BinaryWriter(str(folder), chunk_bytes=chunk_bytes)
    count = 0
    for count, (data, label) in enumerate(items, start=1):
        writer[count - 1] = {"image": data, "label": int(label), "index": count - 1}
    writer.done()
    writer.merge()
    return count
