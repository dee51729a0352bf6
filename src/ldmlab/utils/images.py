"""Image value conventions: models work in [-1, 1], files and metrics in [0, 1]; image files are
opened by ordinary raster decoders only."""

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
