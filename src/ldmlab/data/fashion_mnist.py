"""Fashion-MNIST (60k train / 10k test, 10 classes) from the raw idx .gz files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ldmlab.data.base import ImageDataModule
from ldmlab.data.fetch_fashion_mnist import FILES
from ldmlab.data.transforms import fit_resolution, match_channels, to_model_range
from ldmlab.utils.errors import FieldError
from ldmlab.utils.file_fingerprint import files_fingerprint

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzip'd); returns uint8 array (N,) or (N, H, W)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise FieldError("data", "data_dir", f"{path} is not a uint8 idx file", "re-run `make data`")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise FieldError("data", "data_dir", f"{path} is truncated", "re-run `make data`")
    return body.reshape(dims)


class FashionMNIST(Dataset):
    """Items ``{"image": (channels, resolution, resolution) in [-1, 1], "label": int}``."""

    def __init__(self, root: Path, train: bool, resolution: int, channels: int, resize_mode: str):
        prefix = "train" if train else "t10k"
        self.images = torch.from_numpy(read_idx(root / f"{prefix}-images-idx3-ubyte.gz").copy())
        self.labels = torch.from_numpy(read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").copy())
        if len(self.images) != len(self.labels):
            raise FieldError("data", "data_dir", "image and label counts differ", "re-run `make data`")
        self.resolution, self.channels, self.resize_mode = resolution, channels, resize_mode

    def __len__(self) -> int:
        return len(self.labels)

    def label_of(self, index: int) -> int:
        return int(self.labels[index])

    def __getitem__(self, index: int) -> dict:
        image = to_model_range(self.images[index][None])
        image = fit_resolution(image, self.resolution, self.resize_mode)
        return {"image": match_channels(image, self.channels), "label": int(self.labels[index])}


class FashionMNISTDataModule(ImageDataModule):
    """The embedded default dataset; 28×28 images padded (or resized) to ``resolution``."""

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, data_dir: str, resize_mode: str = "pad", **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir).expanduser()
        self.resize_mode = resize_mode

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        missing = [name for name in FILES if not (self.data_dir / name).is_file()]
        if missing:
            raise FieldError(
                "data", "data_dir", f"{self.data_dir} lacks {', '.join(missing)}",
                "run `make data` or point {key} at the Fashion-MNIST idx files",
            )
        args = (self.resolution, self.channels, self.resize_mode)
        return (
            FashionMNIST(self.data_dir, True, *args),
            FashionMNIST(self.data_dir, False, *args),
        )

    def content_fingerprint(self) -> str:
        """The four idx files' fingerprint (30 MB: every byte hashed, ~20 ms)."""
        return files_fingerprint(self.data_dir, [self.data_dir / name for name in FILES])
