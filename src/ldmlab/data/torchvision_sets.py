"""torchvision datasets (CIFAR-10, MNIST, CelebA, ...) for users who have the files or internet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
from torch.utils.data import Dataset

from ldmlab.data.base import ImageDataModule
from ldmlab.data.transforms import fit_resolution, match_channels, to_model_range
from ldmlab.utils.errors import DataError, FieldError, part_key
from ldmlab.utils.file_fingerprint import files_fingerprint
from ldmlab.utils.images import raster_decoders_only

SPLITS = {  # name -> (train kwargs, test kwargs, number of classes, the folder under ``root``
    #          holding every file torchvision reads for it)
    "CIFAR10": ({"train": True}, {"train": False}, 10, "cifar-10-batches-py"),
    "MNIST": ({"train": True}, {"train": False}, 10, "MNIST"),  # raw/, or legacy processed/*.pt first
    "FashionMNIST": ({"train": True}, {"train": False}, 10, "FashionMNIST"),
    "CelebA": ({"split": "train", "target_type": "attr"}, {"split": "test", "target_type": "attr"}, 1,
               "celeba"),
}


class _Wrapped(Dataset):
    def __init__(self, base: Dataset, resolution: int, channels: int, with_labels: bool) -> None:
        self.base, self.resolution, self.channels = base, resolution, channels
        self.with_labels = with_labels
        self.root_key = part_key("data", "root")  # named here: a worker process may not see the part keys

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        try:
            with raster_decoders_only():  # torchvision opens image files (CelebA) with PIL's every decoder
                img, target = self.base[index]
        except OSError as err:  # unreadable, another format (an EPS would run Ghostscript), a bomb
            raise DataError(self.root_key, f"cannot read item {index} of {type(self.base).__name__} ({err})",
                            "remove or fix the corrupt file") from None
        array = np.asarray(img.convert("RGB" if self.channels == 3 else "L"))
        image = torch.from_numpy(array.copy())
        image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
        image = fit_resolution(to_model_range(image), self.resolution, "resize")
        label = int(target) if self.with_labels else 0
        return {"image": match_channels(image, self.channels), "label": label}


class TorchvisionDataModule(ImageDataModule):
    """``name`` is a torchvision dataset class in ``SPLITS``; files live under ``root``."""

    def __init__(self, name: str, root: str, download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if name not in SPLITS:
            raise FieldError("data", "name", f"unsupported dataset {name!r}", f"one of {list(SPLITS)}")
        self.name, self.root, self.download = name, root, download

    @property
    def num_classes(self) -> int:
        return SPLITS[self.name][2]

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train_kw, test_kw, n_classes, _ = SPLITS[self.name]
        cls = getattr(tvd, self.name)
        try:
            train = cls(self.root, download=self.download, **train_kw)
            test = cls(self.root, download=self.download, **test_kw)
        except RuntimeError as err:
            raise FieldError(
                "data", "root", f"{self.name} not found under {self.root} ({err})",
                f"place the files there or set {part_key('data', 'download')}=true (needs internet)",
            ) from None
        labels = n_classes > 1
        return (_Wrapped(train, self.resolution, self.channels, labels),
                _Wrapped(test, self.resolution, self.channels, labels))

    def content_fingerprint(self) -> str:
        """The fingerprint of every file in this dataset's folder under ``root``."""
        folder = Path(self.root).expanduser() / SPLITS[self.name][3]
        return files_fingerprint(folder, [p for p in folder.rglob("*") if p.is_file()])
