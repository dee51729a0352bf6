"""DDIM inversion round trip of a trained model: ``make invert ARGS="ckpt=... num_images=100"``.

Test images → (condition, x_T) by deterministic DDIM inversion → DDIM decoding; also the same
condition from fresh noise. Writes ``invert.png`` (rows: originals, inverted, fresh noise) and
``summary.json`` (PSNR / SSIM / LPIPS of both, moments of x_T) into ``logs/invert/runs/<timestamp>/``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from ldmlab.commands.cli import CONF_DIR, exit_on_user_error, run
from ldmlab.config.settings import InvertSettings
from ldmlab.evaluation.inversion import first_items, loaded_autoencoder, reconstruct
from ldmlab.metrics.reconstruction import ReconstructionMetrics
from ldmlab.nn.lpips import LPIPS
from ldmlab.runs.layout import update_latest, write_json_atomic
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.images import to_unit


def invert(cfg: DictConfig) -> Path:
    path, autoencoder, dataset = loaded_autoencoder(cfg)
    batch = first_items(dataset, cfg.num_images)
    lpips = LPIPS() if cfg.lpips else None
    generator = torch.Generator().manual_seed(cfg.seed)
    result = reconstruct(autoencoder, batch, partial(ReconstructionMetrics, lpips), cfg.batch_size, generator)
    images = result.pop("images")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    shown = min(cfg.num_show, cfg.num_images)
    grid = torch.cat([images[name][:shown] for name in ("original", "inverted", "random_noise")])
    write_file(run_dir / "invert.png", lambda tmp: save_image(to_unit(grid), tmp, nrow=shown, padding=1))
    write_json_atomic(run_dir / "summary.json", {
        "task": "invert", "checkpoint": str(path), "split": cfg.split, "num_images": cfg.num_images,
        "sampler": OmegaConf.to_container(cfg.sampler), "fixed_point_iters": cfg.fixed_point_iters, **result,
        "files": {"grid": "invert.png"},  # in the run dir
    })
    update_latest(Path(cfg.paths.log_dir) / cfg.task_name, run_dir)
    inverted, fresh = result["inverted"], result["random_noise"]
    print(f"inverted: PSNR {inverted['psnr']:.2f} dB" + (f", LPIPS {inverted['lpips']:.4f}" if lpips else "")
          + f"; fresh noise: PSNR {fresh['psnr']:.2f} dB" + (f", LPIPS {fresh['lpips']:.4f}" if lpips else "")
          + f"; wrote {run_dir / 'summary.json'}")
    return run_dir


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="invert")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(invert, cfg, InvertSettings)


if __name__ == "__main__":
    run(main, "invert")
