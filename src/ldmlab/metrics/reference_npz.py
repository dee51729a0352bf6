"""Reference statistics in the ADM evaluator's reference-batch ``.npz`` layout, read and written.

Layout (openai/guided-diffusion ``evaluations/evaluator.py``): ``mu`` (2048,) and ``sigma``
(2048, 2048): Inception pool_3 Gaussian statistics; ``mu_s`` (2023,) and ``sigma_s`` (2023, 2023):
the spatial (sFID) ones; ``arr_0`` (optional): the reference images, uint8 (N, H, W, 3). Written
statistics are float64 with ``np.cov``'s n − 1 normalisation. ldmlab adds ``num_images`` (a
scalar: how many images the statistics come from), which ADM's evaluator ignores. Read with
``allow_pickle=False``: an array of Python objects is refused, never unpickled.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy
import torch

from ldmlab.metrics.frechet import GaussianStats
from ldmlab.metrics.reference_stats import file_digest
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.errors import FieldError

POOL_KEYS, SPATIAL_KEYS, IMAGES_KEY, COUNT_KEY = ("mu", "sigma"), ("mu_s", "sigma_s"), "arr_0", "num_images"


@dataclass(frozen=True)
class ReferenceNpz:
    """A read ``.npz``: ``pool`` / ``spatial`` statistics (None where the file lacks them),
    ``image_count`` rows of ``arr_0`` (None: no images), ``count`` images behind the statistics
    (``num_images``, else ``arr_0``'s rows; None: unknown) and ``name`` (stem + content hash)."""

    path: Path
    name: str
    pool: GaussianStats | None
    spatial: GaussianStats | None
    image_count: int | None
    count: int | None

    def images(self) -> torch.Tensor:
        """``arr_0`` as uint8 (N, 3, H, W)."""
        with np.load(self.path, allow_pickle=False) as npz:
            return torch.from_numpy(npz[IMAGES_KEY]).permute(0, 3, 1, 2).contiguous()


def _refuse(problem: str) -> FieldError:
    return FieldError("metrics", "reference_stats", problem, "point {key} at an ADM reference batch "
                      "(.npz with mu, sigma, mu_s, sigma_s and/or arr_0), or set {key}=null")


def _images_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of ``arr_0`` from its .npy header, without reading the images."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{IMAGES_KEY}.npy") as member:
        version = npy.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{IMAGES_KEY}.npy has format version {version}")
        read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read_header(member)
    return shape, dtype


def _stats(arrays: dict[str, np.ndarray], keys: tuple[str, str], path: Path) -> GaussianStats | None:
    present = [key for key in keys if key in arrays]
    if not present:
        return None
    if len(present) == 1:
        raise _refuse(f"{path} has {present[0]} without {(set(keys) - set(present)).pop()}")
    mu, sigma = (np.asarray(arrays[key], dtype=np.float64) for key in keys)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise _refuse(f"{path}: {keys[0]} {mu.shape} and {keys[1]} {sigma.shape} are not a mean and its "
                      "covariance")
    return GaussianStats(mu, sigma)


def read_reference_npz(path: str | Path) -> ReferenceNpz:
    """The statistics (and ``arr_0``'s size, not its pixels) of an ADM-layout ``.npz``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise _refuse(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in (*POOL_KEYS, *SPATIAL_KEYS, COUNT_KEY) if key in npz.files}
            header = _images_header(path) if IMAGES_KEY in npz.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise _refuse(f"{path} is not a readable .npz ({err})") from None
    if header is not None and (header[1] != np.uint8 or len(header[0]) != 4 or header[0][-1] != 3):
        raise _refuse(f"{path}: {IMAGES_KEY} is {header[1]} {header[0]}, not uint8 (N, H, W, 3) images")
    pool, spatial = _stats(arrays, POOL_KEYS, path), _stats(arrays, SPATIAL_KEYS, path)
    image_count = header[0][0] if header is not None else None
    if pool is None and spatial is None and image_count is None:
        raise _refuse(f"{path} holds none of mu/sigma, mu_s/sigma_s, {IMAGES_KEY}")
    count = int(arrays[COUNT_KEY]) if COUNT_KEY in arrays else image_count
    return ReferenceNpz(path, f"{path.stem}-{file_digest(path)}", pool, spatial, image_count, count)


def write_reference_npz(path: str | Path, pool: GaussianStats, spatial: GaussianStats | None = None,
                        images: torch.Tensor | None = None, count: int | None = None) -> Path:
    """Write ``path`` atomically (complete or absent): ``pool`` → mu/sigma, ``spatial`` → mu_s/sigma_s,
    ``images`` uint8 (N, 1|3, H, W) → ``arr_0`` (N, H, W, 3), grayscale repeated; ``count``: how
    many images the statistics come from (→ ``num_images``)."""
    arrays = {"mu": pool.mu, "sigma": pool.sigma}
    if spatial is not None:
        arrays |= {"mu_s": spatial.mu, "sigma_s": spatial.sigma}
    if images is not None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, 1|3, H, W), got {images.dtype} {tuple(images.shape)}")
        arrays[IMAGES_KEY] = images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()
    if count is not None:
        arrays[COUNT_KEY] = np.int64(count)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            np.savez(file, **{key: np.asarray(value) for key, value in arrays.items()})

    return write_file(path, save)
