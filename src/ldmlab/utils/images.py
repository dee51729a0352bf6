"""Image value conventions: models work in [-1, 1], files and metrics in [0, 1]; image files are
opened by ordinary raster decoders only."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import Image

RASTER_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF")  # the decoders image files are read with


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] → the same in [0, 1], clamped, on the CPU."""
    return ((images.clamp(-1, 1) + 1) / 2).cpu()


def open_image(path: str | Path) -> Image.Image:
    """``PIL.Image.open`` limited to ``RASTER_FORMATS``. PIL picks a decoder by a file's content,
    whatever its name, and some decoders run other programs (an EPS file, under any name, is
    rendered by Ghostscript, a PostScript interpreter): a file of any other format raises
    ``UnidentifiedImageError``, as an unreadable one does. A decompression bomb (a small file of
    more pixels than PIL's limit) raises ``OSError`` too, rather than PIL's own exception type."""
    try:
        return Image.open(path, formats=RASTER_FORMATS)
    except Image.DecompressionBombError as err:
        raise OSError(str(err)) from None


@contextmanager
def raster_decoders_only() -> Iterator[None]:
    """Inside the block, ``PIL.Image.open`` called without ``formats`` (a library's own reader,
    e.g. torchvision's CelebA) tries ``RASTER_FORMATS`` only, as ``open_image`` does."""
    Image.init()  # every plugin registered now, so none is added to the list while it is narrowed
    every = list(Image.ID)
    Image.ID[:] = [name for name in every if name in RASTER_FORMATS]
    try:
        yield
    finally:
        Image.ID[:] = every
