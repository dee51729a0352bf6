"""One split of a shard folder as ldmlab items, decoded (and flipped) where they are read."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ldmlab.data.shard_format import FORMATS, StreamingDataset
from ldmlab.data.transforms import to_model_range
from ldmlab.utils.errors import DataError


def flips(seed: int, epoch: int, index: int) -> bool:
    """Whether item ``index`` of a split is mirrored left-right in ``epoch``: the low bit of a
    blake2b digest of (seed, epoch, index), so a resumed epoch flips as the uninterrupted one."""
    return bool(hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()[0] & 1)


class ShardImages(StreamingDataset):
    """Items ``{"image": (channels, R, R) float in [-1, 1], "label": int}`` of a litdata dataset
    that ``make shards`` wrote (``input_dir``: a folder or URL; the other keywords are litdata's).

    With ``flip_seed`` each item is mirrored when ``flips(flip_seed, epoch, index)``, ``epoch``
    being litdata's (it counts from 1) and ``index`` the item's position in the split. An image of
    another size than ``resolution``, or an unreadable one, is a ``DataError`` naming ``key`` (the
    data module's resolution key, found where the module was built: a worker may not know it).
    """

    def __init__(self, input_dir: str, resolution: int, channels: int, key: str,
                 flip_seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(input_dir, **kwargs)
        self.resolution, self.channels, self.key, self.flip_seed = resolution, channels, key, flip_seed

    def __getitem__(self, index: Any) -> dict:
        item = super().__getitem__(index)
        flip = self.flip_seed is not None and flips(self.flip_seed, self.current_epoch, item["index"])
        return {"image": self._decode(item["image"], flip), "label": int(item["label"])}

    def _decode(self, data: bytes, flip: bool) -> torch.Tensor:
        try:
            with Image.open(io.BytesIO(data), formats=tuple(FORMATS.values())) as img:
                array = np.asarray(img.convert("RGB" if self.channels == 3 else "L"))
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(self.key, f"an image in {self.input_dir.path or self.input_dir.url} cannot be "
                            f"decoded ({err})", "convert the images again with make shards") from None
        if array.shape[:2] != (self.resolution, self.resolution):
            height, width = array.shape[:2]
            raise DataError(self.key, f"the shards hold {width}x{height} images, not {self.resolution}x"
                            f"{self.resolution}", f"{self.key}={height} if they are square, or convert the "
                            f"images again with make shards resolution={self.resolution}")
        image = torch.from_numpy(array.copy())
        image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
        return to_model_range(image.flip(-1) if flip else image)
