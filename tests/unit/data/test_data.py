"""Datamodules on real Fashion-MNIST and on image folders; bad inputs name their config key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.data.image_folder import ImageFolderDataModule
from ldmlab.data.sample_transforms import AddCaption, AddLowRes
from ldmlab.data.transforms import fit_resolution
from ldmlab.utils.errors import ConfigError


def test_fashion_mnist_full_split_shapes_and_range(fmnist_dir):
    dm = FashionMNISTDataModule(str(fmnist_dir), resolution=32, channels=1, batch_size=64)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (55_000, 5_000, 10_000)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (64, 1, 32, 32)
    assert batch["image"].min() == -1.0 and batch["image"].max() <= 1.0
    assert batch["label"].dtype == torch.long and set(batch["label"].tolist()) <= set(range(10))
    assert torch.all(batch["image"][:, :, :2, :] == -1.0), "28→32 padding is background"


def test_split_is_deterministic_and_disjoint(fmnist_dir):
    a = FashionMNISTDataModule(str(fmnist_dir), split_seed=0)
    b = FashionMNISTDataModule(str(fmnist_dir), split_seed=0)
    a.setup(), b.setup()
    assert a.val_set.base.indices == b.val_set.base.indices
    assert not set(a.val_set.base.indices) & set(a.train_set.base.indices)


def test_three_channels_and_resize(fmnist_dir):
    dm = FashionMNISTDataModule(str(fmnist_dir), resolution=64, channels=3, resize_mode="resize",
                                train_subset=8, val_subset=8)
    dm.setup()
    image = dm.train_set[0]["image"]
    assert image.shape == (3, 64, 64) and torch.equal(image[0], image[2])


def test_missing_data_dir_names_the_key(tmp_path):
    dm = FashionMNISTDataModule(str(tmp_path))
    with pytest.raises(ConfigError, match=r"data\.data_dir.*make data"):
        dm.setup()


@pytest.mark.parametrize(("kwargs", "key"), [({"channels": 2}, "data.channels"),
                                             ({"resolution": 0}, "data.resolution"),
                                             ({"batch_size": 0}, "data.batch_size")])
def test_invalid_values_name_the_key(fmnist_dir, kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        FashionMNISTDataModule(str(fmnist_dir), **kwargs)


def write_png(path, value: int, size=(20, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)


def test_image_folder_with_class_folders(tmp_path):
    for i in range(6):
        write_png(tmp_path / ("cats" if i % 2 else "dogs") / f"{i}.png", 10 * i)
    dm = ImageFolderDataModule(str(tmp_path), class_folders=True, resolution=16, channels=3, batch_size=2)
    dm.setup()
    assert dm.class_names == ("cats", "dogs") and dm.num_classes == 2
    sample = dm.train_set[0]
    assert sample["image"].shape == (3, 16, 16) and sample["label"] in (0, 1)


def test_empty_or_missing_image_folder_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.root.*no images"):
        ImageFolderDataModule(str(tmp_path)).setup()
    with pytest.raises(ConfigError, match=r"data\.root.*not a folder"):
        ImageFolderDataModule(str(tmp_path / "nope")).setup()


def test_corrupt_image_names_the_file(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", 100)
    (tmp_path / "3.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(str(tmp_path), resolution=16, channels=1, val_size=1)
    dm.setup()
    with pytest.raises(ConfigError, match=r"data\.root.*3\.png"):
        [dm.train_set.base.dataset[i] for i in range(4)]


def test_fit_resolution_pads_and_crops():
    image = torch.zeros(1, 28, 28)
    assert fit_resolution(image, 32, "pad").shape == (1, 32, 32)
    assert fit_resolution(image, 32, "pad")[0, 0, 0] == -1.0
    assert fit_resolution(torch.zeros(3, 40, 60), 32, "resize").shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="data.resize_mode"):
        fit_resolution(image, 32, "stretch")


def test_conditioning_sample_transforms():
    sample = {"image": torch.rand(1, 32, 32) * 2 - 1, "label": 7}
    captioned = AddCaption()(sample, seed=3)
    assert "sneaker" in captioned["caption"].lower()
    assert AddCaption()(sample, seed=3)["caption"] == captioned["caption"]
    assert AddLowRes(8)(sample, seed=0)["lowres"].shape == (1, 8, 8)
