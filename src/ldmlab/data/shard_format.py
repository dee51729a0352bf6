"""The shard layout ``make shards`` writes and ``data=streaming`` reads, and litdata's import.

A shard folder holds ``shards.json`` (how it was converted and the sha256 of every file) and one
litdata dataset per split, ``train/`` and ``val/`` (``index.json`` + ``chunk-*.bin``). Each item
is ``{"image": bytes, "label": int, "index": int}``: the encoded image (PNG or JPEG, RGB,
``resolution`` × ``resolution``), its class and its position in its split (0 … n - 1).

litdata asks a package registry for a newer version of itself whenever a dataset is built, unless
``LITDATA_DISABLE_VERSION_CHECK`` is set; a training run never phones out, so it is set here,
before litdata is imported. Its INFO notes (one per dataset built, every epoch) are kept out of the
run's log unless a level was chosen for the ``litdata`` logger.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
if logging.getLogger("litdata").level == logging.NOTSET:
    logging.getLogger("litdata").setLevel(logging.WARNING)

from litdata.streaming.dataloader import StreamingDataLoader  # noqa: E402
from litdata.streaming.dataset import StreamingDataset  # noqa: E402
from litdata.streaming.writer import BinaryWriter  # noqa: E402
from litdata.utilities.format import _convert_bytes_to_int  # noqa: E402

MANIFEST = "shards.json"
SPLITS = ("train", "val")
FORMATS = {"png": "PNG", "jpeg": "JPEG"}  # the ``format`` setting → PIL's encoder



def chunk_bytes(size: str) -> int | None:
    """A chunk size as litdata reads it ("64MB" → 64_000_000); None if it is not a positive size."""
    try:
        value = _convert_bytes_to_int(str(size))
    except ValueError:
        return None
    return value if value > 0 else None


__all__ = ["FORMATS", "MANIFEST", "SPLITS", "BinaryWriter", "StreamingDataLoader", "StreamingDataset",
           "chunk_bytes"]
