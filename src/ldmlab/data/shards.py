"""An image folder as shards (``make shards``): ADM's centre crop, encoded once, in litdata chunks.

The pieces ``ldmlab.commands.shards`` puts together; the layout is ``ldmlab.data.shard_format``'s.
Images are shuffled (seeded) before they are written: litdata shuffles chunks and items within a
chunk, so a folder written in file order (one class after another) would give one-class batches.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ldmlab.data.image_folder import IMAGE_SUFFIXES
from ldmlab.data.shard_format import FORMATS, BinaryWriter
from ldmlab.utils.errors import DataError
from ldmlab.utils.images import open_image


def center_crop(image: Image.Image, resolution: int) -> np.ndarray:
    """ADM's preprocessing (guided-diffusion's ``center_crop_arr``): halve with BOX filtering while
    the short side is at least ``2 * resolution``, resize with BICUBIC so the short side is
    ``resolution`` (the long side rounded), then take the centre (offsets rounded down).
    Returns (resolution, resolution[, C]) uint8."""
    while min(image.size) >= 2 * resolution:
        image = image.resize((image.width // 2, image.height // 2), resample=Image.Resampling.BOX)
    scale = resolution / min(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    array = np.asarray(image.resize(size, resample=Image.Resampling.BICUBIC))
    top, left = (array.shape[0] - resolution) // 2, (array.shape[1] - resolution) // 2
    return array[top : top + resolution, left : left + resolution]


def list_images(root: Path, class_folders: bool) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """The image files under ``root`` (recursively, sorted), their labels and the class names: with
    ``class_folders`` each immediate subfolder is a class (sorted names → 0, 1, …; files directly
    in ``root`` are left out), as ``ImageFolderDataModule`` reads them; else every label is 0."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not class_folders:
        return files, [0] * len(files), ()
    files = [p for p in files if len(p.relative_to(root).parts) > 1]
    names = tuple(sorted({p.relative_to(root).parts[0] for p in files}))
    index = {name: i for i, name in enumerate(names)}
    return files, [index[p.relative_to(root).parts[0]] for p in files], names


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
