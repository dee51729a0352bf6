"""Interpolation strips through a trained model: ``make interpolate ARGS="ckpt=... num_pairs=8"``.

Pairs (0, 1), (2, 3), … of the split: x_T by DDIM inversion, slerp between them, the condition
(DiffAE's z_sem, class embeddings, …) by lerp. Writes ``interpolate.png`` (a strip per pair with
the originals at both ends) and ``summary.json`` with the strips' smoothness: LPIPS between
neighbouring frames (mean, std, max / mean) into ``logs/interpolate/runs/<timestamp>/``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from ldmlab.commands.cli import CONF_DIR, exit_on_user_error, run
from ldmlab.config.settings import InterpolateSettings
from ldmlab.evaluation.inversion import first_items, interpolate, loaded_autoencoder, smoothness
from ldmlab.nn.lpips import LPIPS
from ldmlab.runs.layout import update_latest, write_json_atomic
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.images import to_unit


def interpolation(cfg: DictConfig) -> Path:
    path, autoencoder, dataset = loaded_autoencoder(cfg)
    batch = first_items(dataset, cfg.num_pairs, "num_pairs", per=2)
    a = {k: v[0::2] for k, v in batch.items()}
    b = {k: v[1::2] for k, v in batch.items()}
    strips = interpolate(autoencoder, a, b, cfg.frames, cfg.semantic_only)
    lpips = LPIPS()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    framed = torch.cat([a["image"][:, None], strips, b["image"][:, None]], dim=1)
    write_file(run_dir / "interpolate.png",
               lambda tmp: save_image(to_unit(framed.flatten(0, 1)), tmp, nrow=cfg.frames + 2, padding=1))
    scores = smoothness(strips, lpips)
    write_json_atomic(run_dir / "summary.json", {
        "task": "interpolate", "checkpoint": str(path), "split": cfg.split, "num_pairs": cfg.num_pairs,
        "frames": cfg.frames, "semantic_only": cfg.semantic_only, "fixed_point_iters": cfg.fixed_point_iters,
        "sampler": OmegaConf.to_container(cfg.sampler), "smoothness_lpips": scores,
        "files": {"strips": "interpolate.png"},  # in the run dir
    })
    update_latest(Path(cfg.paths.log_dir) / cfg.task_name, run_dir)
    print(f"neighbouring-frame LPIPS: mean {scores['neighbour_mean']:.4f}, "
          f"std {scores['neighbour_std']:.4f}, max/mean {scores['max_over_mean']:.2f}; "
          f"wrote {run_dir / 'interpolate.png'}")
    return run_dir


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="interpolate")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(interpolation, cfg, InterpolateSettings)


if __name__ == "__main__":
    run(main, "interpolate")
