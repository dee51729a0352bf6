"""Data content fingerprints, the key of every cache derived from data: new pixels under the same
file names (same sizes, even with the old mtime forced back) change it; an unchanged or merely
touched dataset keeps it; every file-backed data module declares one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmlab.data.base import ImageDataModule
from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.data.fetch_fashion_mnist import FILES
from ldmlab.data.image_folder import ImageFolderDataModule
from ldmlab.data.torchvision_sets import SPLITS, TorchvisionDataModule
from ldmlab.utils import file_fingerprint
from ldmlab.utils.file_fingerprint import files_fingerprint


def write_images(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` random 32×32 grayscale BMPs (fixed file size: only the pixels depend on ``seed``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"{i:03d}.bmp" for i in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
    return paths


def overwrite_pixels(folder: Path, seed: int, keep_mtime: bool) -> None:
    """New pixels in every image under the same name and size; ``keep_mtime``: set each file's
    access and modification times back to the old ones."""
    paths = sorted(folder.glob("*.bmp"))
    before = {path: path.stat() for path in paths}
    write_images(folder, len(paths), seed)
    for path, stat in before.items():
        assert path.stat().st_size == stat.st_size
        if keep_mtime:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            assert path.stat().st_mtime_ns == stat.st_mtime_ns


def image_folder(root: Path) -> ImageFolderDataModule:
    return ImageFolderDataModule(str(root), resolution=32, channels=1, batch_size=8)


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_new_pixels_under_the_same_names_change_the_image_folder_fingerprint(tmp_path, keep_mtime):
    write_images(tmp_path, 6, seed=0)
    before = image_folder(tmp_path).content_fingerprint()
    assert image_folder(tmp_path).content_fingerprint() == before  # unchanged: the same key
    overwrite_pixels(tmp_path, seed=1, keep_mtime=keep_mtime)
    assert image_folder(tmp_path).content_fingerprint() != before


def test_touching_or_renaming(tmp_path):
    """A rewrite with the same bytes is no change (no needless rebuild); a renamed file (a moved
    class folder: a new label) is."""
    write_images(tmp_path / "a", 3, seed=0)
    before = image_folder(tmp_path).content_fingerprint()
    for path in (tmp_path / "a").iterdir():
        os.utime(path, ns=(1, 1))
    assert image_folder(tmp_path).content_fingerprint() == before
    (tmp_path / "a").rename(tmp_path / "b")
    assert image_folder(tmp_path).content_fingerprint() != before


def test_large_datasets_add_mtimes_and_hash_the_ends_of_large_files(tmp_path, monkeypatch):
    monkeypatch.setattr(file_fingerprint, "FULL_HASH_BYTES", 0)
    monkeypatch.setattr(file_fingerprint, "BLOCK", 16)
    path = tmp_path / "archive"
    path.write_bytes(bytes(100))
    key = files_fingerprint(tmp_path, [path])
    os.utime(path, ns=(1, 1))
    assert files_fingerprint(tmp_path, [path]) != key  # sampled: the mtime counts
    key = files_fingerprint(tmp_path, [path])
    for offset, changed in ((99, True), (0, True), (50, False)):  # the middle is not read
        data = bytearray(bytes(100))
        data[offset] = 1
        path.write_bytes(bytes(data))
        os.utime(path, ns=(1, 1))
        assert (files_fingerprint(tmp_path, [path]) != key) is changed, offset


def test_fashion_mnist_fingerprints_its_idx_files(fmnist_dir, tmp_path):
    for name in FILES:
        shutil.copyfile(fmnist_dir / name, tmp_path / name)
    before = FashionMNISTDataModule(str(tmp_path)).content_fingerprint()
    assert before == FashionMNISTDataModule(str(fmnist_dir)).content_fingerprint()  # content, not place
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    stat, data = labels.stat(), bytearray(labels.read_bytes())
    data[len(data) // 2] ^= 1
    labels.write_bytes(bytes(data))
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert FashionMNISTDataModule(str(tmp_path)).content_fingerprint() != before


def test_torchvision_sets_fingerprint_their_folder(tmp_path):
    folder = tmp_path / SPLITS["MNIST"][3]
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte").write_bytes(bytes(64))
    before = TorchvisionDataModule("MNIST", str(tmp_path)).content_fingerprint()
    (folder / "train-images-idx3-ubyte").write_bytes(bytes(63) + b"\x01")
    assert TorchvisionDataModule("MNIST", str(tmp_path)).content_fingerprint() != before
    processed = tmp_path / "MNIST" / "processed"  # torchvision reads these legacy files when present
    processed.mkdir(exist_ok=True)
    for name in ("training.pt", "test.pt"):
        (processed / name).write_bytes(bytes(8))
    before = TorchvisionDataModule("MNIST", str(tmp_path)).content_fingerprint()
    (processed / "training.pt").write_bytes(bytes(7) + b"\x01")
    assert TorchvisionDataModule("MNIST", str(tmp_path)).content_fingerprint() != before


def test_a_module_that_cannot_tell_its_content_says_so():
    class Synthetic(ImageDataModule):
        pass

    assert Synthetic().content_fingerprint() is None
