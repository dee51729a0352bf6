"""Interpolation strips through a trained model: ``make interpolate ARGS="ckpt=... num_pairs=8"``.

Pairs (0, 1), (2, 3), … of the split: x_T by DDIM inversion, slerp between them, the condition
(DiffAE's z_sem, class embeddings, …) by lerp. Writes ``interpolate.png`` (a strip per pair with
the originals at both ends) and ``summary.json`` with the strips' smoothness: LPIPS between
neighbouring frames (mean, std, max / mean) into ``logs/interpolate/runs/<timestamp>/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from ldmlab.commands.checkpoint import open_diffusion_autoencoder
from ldmlab.commands.cli import command
from ldmlab.commands.finish import finish, run_dir
from ldmlab.config.settings import InterpolateSettings
from ldmlab.evaluation.inversion import first_items, interpolate, smoothness
from ldmlab.nn.lpips import LPIPS
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.images import to_unit


def interpolation(cfg: DictConfig) -> Path:
    path, autoencoder, dataset = open_diffusion_autoencoder(cfg)
    batch = first_items(dataset, cfg.num_pairs, "num_pairs", per=2)
    a = {k: v[0::2] for k, v in batch.items()}
    b = {k: v[1::2] for k, v in batch.items()}
    strips = interpolate(autoencoder, a, b, cfg.frames, cfg.semantic_only)
    lpips = LPIPS()
    folder = run_dir()
    framed = torch.cat([a["image"][:, None], strips, b["image"][:, None]], dim=1)
    write_file(folder / "interpolate.png",
               lambda tmp: save_image(to_unit(framed.flatten(0, 1)), tmp, nrow=cfg.frames + 2, padding=1))
    scores = smoothness(strips, lpips)
    finish(cfg, {
        "task": "interpolate", "checkpoint": str(path), "split": cfg.split, "num_pairs": cfg.num_pairs,
        "frames": cfg.frames, "semantic_only": cfg.semantic_only, "fixed_point_iters": cfg.fixed_point_iters,
        "sampler": OmegaConf.to_container(cfg.sampler), "smoothness_lpips": scores,
        "files": {"strips": "interpolate.png"},  # in the run dir
    })
    print(f"neighbouring-frame LPIPS: mean {scores['neighbour_mean']:.4f}, "
          f"std {scores['neighbour_std']:.4f}, max/mean {scores['max_over_mean']:.2f}; "
          f"wrote {folder / 'interpolate.png'}")
    return folder


main = command(interpolation, "interpolate", InterpolateSettings)

if __name__ == "__main__":
    main()
