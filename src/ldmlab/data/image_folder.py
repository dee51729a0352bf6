"""A user's own folder of images: resize + centre crop (bilinear, or ADM's BOX + BICUBIC), optional
class-from-subfolder labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError
from torch.utils.data import Dataset

from ldmlab.data.base import ImageDataModule
from ldmlab.data.image_files import IMAGE_SUFFIXES, center_crop, list_images
from ldmlab.data.transforms import fit_resolution, match_channels, to_model_range
from ldmlab.utils.errors import DataError, FieldError, part_key
from ldmlab.utils.file_fingerprint import files_fingerprint
from ldmlab.utils.images import open_image


class ImageFolder(Dataset):
    """Items ``{"image": (C, R, R) in [-1, 1], "label": int}`` (label 0 without class folders).

    ``resize_mode``: ``resize`` (bilinear, antialiased, short side to R, centre crop) or ``adm``
    (guided-diffusion's ``center_crop_arr`` on the decoded image, as ``make shards`` stores it).
    """

    def __init__(self, files: list[Path], labels: list[int], resolution: int, channels: int,
                 resize_mode: str = "resize"):
        self.files, self.labels = files, labels
        self.resolution, self.channels, self.resize_mode = resolution, channels, resize_mode
        self.root_key = part_key("data", "root")  # named here: a worker process may not see the part keys

    def __len__(self) -> int:
        return len(self.files)

    def label_of(self, index: int) -> int:
        return self.labels[index]

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        try:
            with open_image(path) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
                array = center_crop(img, self.resolution) if self.resize_mode == "adm" else np.asarray(img)
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(  # DataError: one line also from a DataLoader worker process
                self.root_key, f"cannot read image {path} ({err})", "remove or fix the corrupt file"
            ) from None
        image = torch.from_numpy(array.copy())
        image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
        image = to_model_range(image)
        if self.resize_mode != "adm":
            image = fit_resolution(image, self.resolution, "resize")
        return {"image": match_channels(image, self.channels), "label": self.labels[index]}


class ImageFolderDataModule(ImageDataModule):
    """Images under ``root`` (recursively). With ``class_folders`` each immediate subfolder is
    a class (sorted names → labels); the test split is the validation split.
    """

    def __init__(self, root: str, class_folders: bool = False, resize_mode: str = "resize", **kwargs) -> None:
        kwargs.setdefault("val_size", 0)
        super().__init__(**kwargs)
        if resize_mode not in ("resize", "adm"):
            raise FieldError("data", "resize_mode", f"unknown mode {resize_mode!r}", "use 'resize' or 'adm'")
        self.resize_mode = resize_mode
        self.root = Path(root).expanduser()
        self.class_folders = class_folders
        self.class_names: tuple[str, ...] = ()
        self._files: list[Path] = []  # the images read, found by ``setup``

    @property
    def num_classes(self) -> int:
        return max(len(self.class_names), 1)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if not self.root.is_dir():
            raise FieldError("data", "root", f"{self.root} is not a folder", "point it at your images")
        files, labels, self.class_names = list_images(self.root, self.class_folders)
        if not files:
            raise FieldError(
                "data", "root", f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {self.root}",
                "point it at a folder of images",
            )
        if len(files) < 2:
            raise FieldError("data", "root", f"{len(files)} image under {self.root}: training holds one out "
                             "for validation, so it needs at least 2", "add images to the folder")
        if self.val_size == 0:
            self.val_size = max(1, len(files) // 20)
        self._files = files
        dataset = ImageFolder(files, labels, self.resolution, self.channels, self.resize_mode)
        return dataset, dataset

    def content_fingerprint(self) -> str:
        """The fingerprint of the image files ``setup`` found (their paths under ``root`` carry the
        class folders, hence the labels)."""
        self.setup()
        return files_fingerprint(self.root, self._files)
