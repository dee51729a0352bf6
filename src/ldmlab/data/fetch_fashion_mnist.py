"""Provide the Fashion-MNIST idx files in a folder, offline when possible.

Order: files already present → Debian package ``dataset-fashion-mnist`` fetched with
``apt-get download`` and unpacked with ``dpkg -x`` (no system-wide install) → the standard
torchvision download for users with internet. Usage: ``python -m ldmlab.data.fetch_fashion_mnist DEST``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.errors import part_key

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_SUBDIR = Path("usr/share/datasets/fashion-mnist")


def is_complete(dest: Path) -> bool:
    return all((dest / name).is_file() for name in FILES)


def from_debian_package(dest: Path) -> bool:
    """Download the .deb and unpack only its data files into ``dest``; False if unavailable."""
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            ["apt-get", "download", DEBIAN_PACKAGE], cwd=tmp, capture_output=True, text=True
        )
        debs = list(Path(tmp).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if got.returncode != 0 or not debs:
            print(f"apt-get download {DEBIAN_PACKAGE} failed: {got.stderr.strip()}", file=sys.stderr)
            return False
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True)
        for name in FILES:
            write_file(dest / name, lambda tmp, n=name: shutil.copyfile(unpacked / DEBIAN_SUBDIR / n, tmp))
    return True


def from_torchvision(dest: Path) -> bool:
    """The standard download (needs internet); moves the raw files into ``dest``."""
    from torchvision.datasets import FashionMNIST

    with tempfile.TemporaryDirectory() as tmp:
        try:
            FashionMNIST(tmp, train=True, download=True)
            FashionMNIST(tmp, train=False, download=True)
        except Exception as err:  # noqa: BLE001 - any network failure means "not available"
            print(f"torchvision download failed: {err}", file=sys.stderr)
            return False
        raw = Path(tmp) / "FashionMNIST" / "raw"
        for name in FILES:
            write_file(dest / name, lambda tmp, n=name: shutil.copyfile(raw / n, tmp))
    return True


def fetch(dest: str | Path) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if is_complete(dest) or from_debian_package(dest) or from_torchvision(dest):
        return dest
    raise SystemExit(
        f"could not obtain Fashion-MNIST into {dest}: put the four idx .gz files ({', '.join(FILES)}) "
        f"there by hand, or set {part_key('data', 'data_dir')} to a folder holding them"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", help="folder to hold the four idx .gz files")
    print(fetch(parser.parse_args().dest))


if __name__ == "__main__":
    main()
