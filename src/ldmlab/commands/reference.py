"""Reference statistics of a data split as an ADM reference batch:
``make reference ARGS="data=fashion_mnist reference_split=train num_reference=50000 out=refs/fmnist.npz"``.

The first ``num_reference`` images of ``reference_split`` (``evaluation.reference.load_reference``,
as ``make evaluate`` reads them) go through the 2048-d Inception-v3 of the ``metrics`` group
(``metrics.inception_weights``; ``metrics.fid_feature_layer`` must be "2048" and ``metrics.sfid``
true) and ``out`` receives, atomically, the ADM layout of ``ldmlab.metrics.reference_npz``:
``mu``/``sigma`` (pool_3), ``mu_s``/``sigma_s`` (spatial), ``num_images`` and, with
``include_images=true``, the images as ``arr_0`` (uint8 NHWC) so KID and precision/recall can be
scored against the file. ``make evaluate ARGS="... metrics=paper metrics.reference_stats=<out>"``
then compares with it. The file's path and sha256 are printed; ``summary.json`` of the run records
them with the count, data config, split, the images' content identity (the reference name, which
holds the sha256 of their pixels), the feature network's identity and the ldmlab version.

Refused with one line before any feature is extracted: ``out`` unset, not ``.npz``, a link or a
folder; a file ldmlab did not write there (never replaced); an earlier reference file there
without ``overwrite=true``; an unknown split; more images than the split has.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import ldmlab
from ldmlab.commands.cli import command
from ldmlab.commands.finish import finish
from ldmlab.config.settings import CommandSettings
from ldmlab.config.types import PositiveInt
from ldmlab.evaluation.reference import load_reference
from ldmlab.metrics.reference_npz import COUNT_KEY, IMAGES_KEY, POOL_KEYS, SPATIAL_KEYS
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.file_fingerprint import file_sha256

# the metrics a reference batch has no use for: only the Inception statistics are written
NOT_WRITTEN = {"inception_score": False, "classifier_ckpt": None, "fd_dinov2": False, "reference_stats": None,
               "compute_kid": False, "compute_precision_recall": False}


class ReferenceSettings(CommandSettings, total=False):
    """conf/reference.yaml."""

    reference_split: str
    num_reference: PositiveInt
    out: str | None
    include_images: bool
    overwrite: bool


def reference(cfg: DictConfig) -> Path:
    out = checked_out(cfg.out, cfg.overwrite)
    datamodule = instantiate(cfg.data)
    images, _ = load_reference(datamodule, cfg.reference_split, cfg.num_reference)
    evaluator = instantiate(cfg.metrics, **NOT_WRITTEN)(reference=images)
    path = evaluator.write_reference_npz(out, with_images=cfg.include_images)
    digest = file_sha256(path)
    arrays = [*POOL_KEYS, *SPATIAL_KEYS, COUNT_KEY] + ([IMAGES_KEY] if cfg.include_images else [])
    finish(cfg, {
        "task": "reference", "file": str(path.resolve()), "sha256": digest, "arrays": arrays,
        "split": cfg.reference_split, "data": OmegaConf.to_container(cfg.data, resolve=True),
        "provenance": {**evaluator.provenance(), "ldmlab_version": ldmlab.__version__},
    })
    print(f"wrote {path} (sha256 {digest}): Inception statistics of {len(images)} {images.name} images"
          + (f" and the images ({IMAGES_KEY})" if cfg.include_images else ""))
    print(f"score against it: make evaluate ARGS=\"ckpt=... sweep=paper metrics=paper guidance_scales=[<s>] "
          f"metrics.reference_stats={path}\"")
    return path


def checked_out(value: str | None, overwrite: bool) -> Path:
    """``out`` as a file this command may write: a new ``.npz``, or (``overwrite``) one it wrote."""
    if not value:
        raise ConfigError("out", "is not set", "out=refs/<dataset>_<split>.npz")
    path = Path(value).expanduser()
    if path.is_dir() and not path.is_symlink():
        raise ConfigError("out", f"{path} is a folder, not a file", f"out={path / 'reference.npz'}")
    folder = next(parent for parent in path.parents if parent.exists())
    if not folder.is_dir():
        raise ConfigError("out", f"{folder} is a file, so {path} cannot be written under it",
                          f"out={folder.with_name(folder.stem + '_refs') / path.name}")
    if path.suffix != ".npz":
        raise ConfigError("out", f"{path} is not an .npz file name",
                          f"out={path.with_name(path.name + '.npz')}")
    if path.is_symlink():
        raise ConfigError("out", f"{path} is a symbolic link; the file is written itself, never through a "
                          "link", f"out={_free(path)}")
    if not path.exists():
        return path
    if not path.is_file() or not written_here(path):  # a FIFO is never opened
        raise ConfigError("out", f"{path} is not a reference batch ldmlab wrote; it is never replaced",
                          f"out={_free(path)}")
    if not overwrite:
        raise ConfigError("out", f"{path} holds an earlier reference batch",
                          f"overwrite=true, or out={_free(path)}")
    return path


def written_here(path: Path) -> bool:
    """Whether ``path`` is a reference batch ldmlab wrote: an .npz with mu, sigma and ``num_images``
    (ldmlab's key; ADM's own batches lack it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {f"{key}.npy" for key in (*POOL_KEYS, COUNT_KEY)} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _free(path: Path) -> Path:
    """The first ``<stem>_<n>.npz`` beside ``path`` that nothing occupies."""
    n = 2
    while (candidate := path.with_name(f"{path.stem}_{n}.npz")).exists() or candidate.is_symlink():
        n += 1
    return candidate


main = command(reference, "reference", ReferenceSettings)

if __name__ == "__main__":
    main()
