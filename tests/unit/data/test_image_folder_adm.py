"""The image folder at ADM's preprocessing: each image is ``center_crop`` of its file (what
``make shards`` stores), RGB, in [-1, 1]; the random flip mirrors training items only, as their
seeds decide."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ldmlab.data.image_files import center_crop
from ldmlab.data.image_folder import ImageFolderDataModule
from ldmlab.data.random_flip import flips
from ldmlab.utils.errors import FieldError


def _folder(root, count: int = 6):
    rng = np.random.default_rng(0)
    for k in range(count):
        cls = root / f"c{k % 2}"
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + 4 * k, 52, 3), dtype=np.uint8)).save(cls / f"{k}.png")
    return root


def test_adm_mode_yields_the_centre_crop_of_each_file(tmp_path):
    dm = ImageFolderDataModule(str(_folder(tmp_path)), class_folders=True, resolution=16, channels=3,
                               resize_mode="adm", val_size=1, random_flip=True)
    dm.setup()
    full = dm.train_set.base.dataset
    for index in range(len(full)):
        with Image.open(full.files[index]) as img:
            expected = torch.from_numpy(center_crop(img.convert("RGB"), 16).copy()).permute(2, 0, 1)
        assert torch.equal(full[index]["image"], expected.float() / 127.5 - 1)
        assert full[index]["label"] == full.label_of(index) == int(full.files[index].parent.name[1])
    seeds = [s for s in range(40) if flips(s)][:2] + [s for s in range(40) if not flips(s)][:2]
    plain = dm.train_set.base[0]["image"]
    for seed in seeds:  # training pairs (index, seed) are mirrored where the seed says so
        assert torch.equal(dm.train_set[(0, seed)]["image"], plain.flip(-1) if flips(seed) else plain)
    assert torch.equal(dm.val_set[0]["image"], dm.val_set.base[0]["image"])  # validation: never


def test_an_unknown_resize_mode_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(FieldError, match="data.resize_mode"):
        ImageFolderDataModule(str(_folder(tmp_path)), resize_mode="lanczos")
