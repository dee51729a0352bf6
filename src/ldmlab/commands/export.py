"""Export a trained model to diffusers format: ``make export ARGS="ckpt=... out=exported/fmnist"``.

A stage-2 (train_ldm) checkpoint gives its denoiser (EMA weights by default) as ``out/unet``
(``UNet2DConditionModel``) or, for a DiT, ``out/transformer`` (``DiTTransformer2DModel`` with the
class table), plus ``out/scheduler`` (``DDIMScheduler`` with the trained noise schedule; flow
matching's and EDM's twins for those objectives, ``ldmlab.interop.scheduler``),
``out/conditioner`` (the conditioner's weights + ``conditioner.json``: how to build the denoiser's
inputs) and ``out/vae`` (``AutoencoderKL`` with the fitted latent scale); a stage-1 (train_ae)
checkpoint gives ``out/vae`` only. A net diffusers cannot express (a U-ViT, a DiT with
cross-attention, ...) refuses before anything is written. Every part is reloaded from disk and
compared with ldmlab on fixed random inputs (``ldmlab.interop.diffusers_folder``); the max |diff|
are printed and written to ``out/export.json``. A mismatch is a bug (RuntimeError).

``out`` is checked before any work (not a link, a file or under one); everything is built in a
temporary folder beside it and swapped in only once every part has been checked, so a failed
export leaves ``out`` as it was. ``export.json`` lists every file written (with its sha256);
``overwrite=true`` replaces an earlier export only when ``out`` holds nothing else — a file of
yours there, or an edited one, refuses, and is never deleted.
"""

from __future__ import annotations

from pathlib import Path

import diffusers
import torch
from omegaconf import DictConfig

from ldmlab.autoencoder.loading import load_autoencoder
from ldmlab.checkpoints import FIRST_STAGE_CONFIG, read_checkpoint
from ldmlab.commands.checkpoint import checkpoint_path
from ldmlab.commands.cli import command
from ldmlab.config.settings import ExportSettings
from ldmlab.interop.diffusers_folder import export_ldm, export_vae
from ldmlab.models.restore import FIX, KEY, ldm_architecture, load_ldm
from ldmlab.utils.atomic_output import write_json
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.output_dir import atomic_dir, check_replaceable, checked_output_dir

MARKER = "export.json"


def export(cfg: DictConfig) -> Path:
    out = _checked_out(cfg.out, cfg.overwrite)
    path = checkpoint_path(cfg)
    checkpoint = read_checkpoint(path, KEY, FIX)
    generator = torch.Generator().manual_seed(cfg.seed)
    with atomic_dir(out, MARKER, "out") as tmp:
        if FIRST_STAGE_CONFIG in checkpoint:
            schedule = ldm_architecture(checkpoint, path)["module"]["schedule"]
            parts, diffs, extra = export_ldm(load_ldm(path), schedule, tmp, cfg.use_ema, cfg.rtol, generator)
        else:
            autoencoder = load_autoencoder(path, KEY, FIX)[0].eval()
            scaling_factor = 1.0 if cfg.scaling_factor is None else float(cfg.scaling_factor)
            parts, diffs, extra = export_vae(autoencoder, scaling_factor, tmp, cfg.rtol, generator)
        write_json(tmp / MARKER, {
            "task": "export", "checkpoint": str(path), **extra, "parts": parts, "max_abs_diff": diffs,
            "rtol": cfg.rtol, "seed": cfg.seed, "diffusers_version": diffusers.__version__,
        })
    for name, diff in diffs.items():
        print(f"{name}: max |diff| = {diff:.3g}")
    print(f"wrote {', '.join(parts)} and {MARKER} to {out}")
    return out


def _checked_out(out: str | None, overwrite: bool) -> Path:
    """The output folder: missing or empty, or (``overwrite=true``) an earlier export holding only
    the files its ``export.json`` lists."""
    if not out:
        raise ConfigError("out", "is not set", "out=exported/ldm")
    folder = checked_output_dir(out, "out")
    if folder.is_dir() and any(folder.iterdir()):
        check_replaceable(folder, MARKER, "out")
        if not overwrite:
            raise ConfigError("out", f"{folder} holds an earlier export", "overwrite=true")
    return folder


main = command(export, "export", ExportSettings)

if __name__ == "__main__":
    main()
