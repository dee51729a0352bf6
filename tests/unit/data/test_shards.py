"""``make shards`` (``ldmlab.commands.shards``): ADM's centre crop in closed form, a lossless round
trip of every image and label, the held-out split, and an output written whole or not at all."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmlab.data.image_files import center_crop
from ldmlab.data.shard_format import MANIFEST, StreamingDataset
from tests.conftest import run_forked

RNG = np.random.default_rng(0)


def _image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array.astype(np.uint8))


def test_center_crop_halves_with_box_filters_then_crops_the_centre():
    """Constant 2×2 (8×8) blocks average to themselves, and at scale 1 BICUBIC is the identity, so
    the crop of the upsampled image is the source itself (its centre for a wide one)."""
    wide = RNG.integers(0, 256, (16, 24, 3))
    up = wide.repeat(2, axis=0).repeat(2, axis=1)  # 32×48: one halving, short side 16
    np.testing.assert_array_equal(center_crop(_image(up), 16), wide[:, 4:20])
    small = RNG.integers(0, 256, (8, 8, 3))
    up = small.repeat(8, axis=0).repeat(8, axis=1)  # 64 → 32 → 16 → 8: halved while ≥ 2 × 8
    np.testing.assert_array_equal(center_crop(_image(up), 8), small)


def test_center_crop_resizes_a_short_side_below_twice_the_resolution_with_bicubic():
    image = _image(RNG.integers(0, 256, (20, 30, 3)))  # short side 20 < 32: no halving; × 0.8
    expected = np.asarray(image.resize((24, 16), resample=Image.Resampling.BICUBIC))[:, 4:20]
    np.testing.assert_array_equal(center_crop(image, 16), expected)


def _folder(root: Path, sizes=((40, 36),) * 8) -> dict[bytes, int]:
    """Images in class folders a/ and b/ (half each); their ADM crops at 16 px → label."""
    expected = {}
    for i, (h, w) in enumerate(sizes):
        array = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = int(i >= len(sizes) // 2)
        (root / "ab"[label]).mkdir(parents=True, exist_ok=True)
        _image(array).save(root / "ab"[label] / f"{i}.png")
        expected[center_crop(_image(array), 16).tobytes()] = label
    return expected


def _convert(tmp_path: Path, *args: str):
    return run_forked("ldmlab.commands.shards", ["resolution=16", "chunk_bytes=2KB", "num_workers=0", *args],
                      tmp_path / "logs")


def _items(split_dir: Path) -> list[dict]:
    dataset = StreamingDataset(str(split_dir))
    return [dataset[i] for i in range(len(dataset))]


def test_round_trip_is_lossless_with_labels_and_a_held_out_split(tmp_path):
    expected = _folder(tmp_path / "images")
    out = tmp_path / "shards"
    result = _convert(tmp_path, f"input={tmp_path / 'images'}", f"out={out}", "class_folders=true",
                      "val_size=2", "num_workers=2")
    assert result.returncode == 0, result.stderr[-3000:]
    train, val = _items(out / "train"), _items(out / "val")
    assert (len(train), len(val)) == (6, 2)
    assert len(list((out / "train").glob("chunk-*.bin"))) > 1  # 2 KB chunks of ~800-byte PNGs
    for split in (train, val):
        assert [item["index"] for item in split] == list(range(len(split)))
    decoded = {}
    for item in train + val:
        with Image.open(io.BytesIO(item["image"])) as img:
            assert img.format == "PNG" and img.size == (16, 16)
            decoded[np.asarray(img).tobytes()] = item["label"]
    assert decoded == expected  # every image once, pixel for pixel, with its class folder's label
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["class_names"] == ["a", "b"] and manifest["counts"] == {"train": 6, "val": 2}
    assert set(manifest["files"]) == {p.relative_to(out).as_posix() for p in out.rglob("*")
                                      if p.is_file() and p.name != MANIFEST}


def test_the_same_conversion_again_is_a_no_op_and_another_refuses(tmp_path):
    _folder(tmp_path / "images")
    out, common = tmp_path / "shards", [f"input={tmp_path / 'images'}", f"out={tmp_path / 'shards'}"]
    assert _convert(tmp_path, *common).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = _convert(tmp_path, *common)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr[-3000:]
    other = _convert(tmp_path, *common, "format=jpeg")
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert other.stderr.startswith(f"error: out: {out} already holds shards of other images or settings")
    assert other.stderr.rstrip().endswith(f"Fix: out={out}_2")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    foreign = _convert(tmp_path, common[0], f"out={tmp_path / 'mine'}")
    assert foreign.returncode == 2 and "files that are not shards" in foreign.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_corrupt_image_leaves_no_output_behind(tmp_path):
    _folder(tmp_path / "images")
    (tmp_path / "images" / "b" / "broken.png").write_bytes(b"not an image")
    result = _convert(tmp_path, f"input={tmp_path / 'images'}", f"out={tmp_path / 'out' / 'shards'}",
                      "num_workers=2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: input: cannot read image ") and "broken.png" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "logs"]  # no out/, no temporary folder


@pytest.mark.parametrize(("make", "args", "message"), [
    (None, ["input={tmp}/missing"], "error: input: {tmp}/missing is not a folder. Fix: "),
    ("empty", ["input={tmp}/empty"], "error: input: 0 images under it ({tmp}/empty)"),
    ("flat", ["input={tmp}/flat", "class_folders=true"], "error: input: 0 images in its class subfolders"),
    ("flat", ["input={tmp}/flat", "val_size=5"], "error: val_size: 5 leaves no training images of 2. Fix: "),
    ("flat", ["input={tmp}/flat", "chunk_bytes=lots"], "error: chunk_bytes: 'lots' is not a size in bytes"),
    ("flat", ["input={tmp}/flat", "format=gif"], "error: format: expected one of png, jpeg, got 'gif'. Fix:"),
    ("flat", ["input={tmp}/flat"], "error: out: is not set. Fix: out="),
])
def test_bad_input_is_one_line_naming_its_key(tmp_path, make, args, message):
    if make == "empty":
        (tmp_path / "empty" / "sub").mkdir(parents=True)
        (tmp_path / "empty" / "sub" / "notes.txt").write_text("no images here")
    elif make == "flat":
        (tmp_path / "flat").mkdir()
        for i in range(2):
            _image(RNG.integers(0, 256, (16, 16, 3))).save(tmp_path / "flat" / f"{i}.png")
    out = [] if "out" in message else [f"out={tmp_path / 'shards'}"]
    result = _convert(tmp_path, *[a.format(tmp=tmp_path) for a in args], *out)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
    assert not (tmp_path / "shards").exists()
