"""DDIM inversion round trip of a trained model: ``make invert ARGS="ckpt=... num_images=100"``.

Test images → (condition, x_T) by deterministic DDIM inversion → DDIM decoding; also the same
condition from fresh noise. Writes ``invert.png`` (rows: originals, inverted, fresh noise) and
``summary.json`` (PSNR / SSIM / LPIPS of both, moments of x_T) into ``logs/invert/runs/<timestamp>/``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from ldmlab.commands.checkpoint import open_diffusion_autoencoder
from ldmlab.commands.cli import command
from ldmlab.commands.finish import finish, run_dir
from ldmlab.config.settings import InvertSettings
from ldmlab.evaluation.inversion import first_items, reconstruct
from ldmlab.metrics.reconstruction import ReconstructionMetrics
from ldmlab.nn.lpips import LPIPS
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.images import to_unit


def invert(cfg: DictConfig) -> Path:
    path, autoencoder, dataset = open_diffusion_autoencoder(cfg)
    batch = first_items(dataset, cfg.num_images)
    lpips = LPIPS() if cfg.lpips else None
    generator = torch.Generator().manual_seed(cfg.seed)
    result = reconstruct(autoencoder, batch, partial(ReconstructionMetrics, lpips), cfg.batch_size, generator)
    images = result.pop("images")
    folder = run_dir()
    shown = min(cfg.num_show, cfg.num_images)
    grid = torch.cat([images[name][:shown] for name in ("original", "inverted", "random_noise")])
    write_file(folder / "invert.png", lambda tmp: save_image(to_unit(grid), tmp, nrow=shown, padding=1))
    finish(cfg, {
        "task": "invert", "checkpoint": str(path), "split": cfg.split, "num_images": cfg.num_images,
        "sampler": OmegaConf.to_container(cfg.sampler), "fixed_point_iters": cfg.fixed_point_iters, **result,
        "files": {"grid": "invert.png"},  # in the run dir
    })
    inverted, fresh = result["inverted"], result["random_noise"]
    print(f"inverted: PSNR {inverted['psnr']:.2f} dB" + (f", LPIPS {inverted['lpips']:.4f}" if lpips else "")
          + f"; fresh noise: PSNR {fresh['psnr']:.2f} dB" + (f", LPIPS {fresh['lpips']:.4f}" if lpips else "")
          + f"; wrote {folder / 'summary.json'}")
    return folder


main = command(invert, "invert", InvertSettings)

if __name__ == "__main__":
    main()
