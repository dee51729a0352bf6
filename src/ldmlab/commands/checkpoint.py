"""Opening the trained model a command runs: ``ckpt`` (a .ckpt or run dir; null → the newest
``logs/train_ldm/latest``), read weights only, on ``device`` (auto | cpu | cuda[:i] | mps)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch.utils.data import Dataset

from ldmlab.evaluation.inversion import check_split, stored_split
from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.models.restore import build_sampler, load_ldm, resolve_ldm_checkpoint
from ldmlab.semantic.autoencoding import DiffusionAutoencoder
from ldmlab.utils.device import resolve_device


def checkpoint_path(cfg: DictConfig) -> Path:
    """The checkpoint file ``ckpt`` names (``paths.log_dir``: where ``latest`` is looked up)."""
    return resolve_ldm_checkpoint(cfg.ckpt, cfg.paths.log_dir)


def open_ldm(cfg: DictConfig) -> tuple[Path, LatentDiffusionModule]:
    """The checkpoint file and its model (EMA, first stage and latent scale restored, eval mode) on
    ``device``; the device is checked before the checkpoint is read."""
    device = resolve_device(cfg.device)
    path = checkpoint_path(cfg)
    return path, load_ldm(path).to(device)


def open_diffusion_autoencoder(cfg: DictConfig) -> tuple[Path, DiffusionAutoencoder, Dataset]:
    """The checkpoint, its model as a ``DiffusionAutoencoder`` through the command's DDIM
    (``sampler``, ``fixed_point_iters``, ``use_ema``) and ``split`` of its stored data."""
    check_split(cfg.split)
    path, module = open_ldm(cfg)
    autoencoder = DiffusionAutoencoder(module, build_sampler(cfg.sampler, module), cfg.fixed_point_iters,
                                       cfg.use_ema)
    return path, autoencoder, stored_split(path, cfg.split)
