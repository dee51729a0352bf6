"""Image files of a folder: which files count, their class-folder labels, ADM's centre crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


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
