"""Draw samples from a trained LDM: ``make sample ARGS="sampler=ddim guidance.scale=3 class_label=7"``.

``guidance`` is a config group (cfg, interval, autoguidance, classifier, image, cfg_classifier, none). Writes
``samples.png`` (a grid) and ``samples.npz`` (uint8 images (N, H, W, C), labels, prompt,
guidance name, its (swept) scale and config, sampler) into ``logs/sample/runs/<timestamp>/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from ldmlab.commands.checkpoint import open_ldm
from ldmlab.commands.cli import command
from ldmlab.commands.finish import finish, run_dir
from ldmlab.conditioning.condition_builder import chunk_of
from ldmlab.config.settings import SampleSettings
from ldmlab.guidance.inputs import guided_condition
from ldmlab.models.restore import build_sampler
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.images import to_unit
from ldmlab.utils.progress import Progress


def sample(cfg: DictConfig) -> Path:
    guidance = instantiate(cfg.guidance)
    path, module = open_ldm(cfg)
    device = module.device
    sampler = build_sampler(cfg.sampler, module)
    conditioner = module.ema.shadow["conditioner"]
    condition = guided_condition(conditioner, guidance, cfg.num_samples, class_label=cfg.class_label,
                                 prompt=cfg.prompt)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    images = []
    with Progress(cfg.num_samples, "sampling (images)") as progress:
        for start in range(0, cfg.num_samples, cfg.batch_size):
            n = min(cfg.batch_size, cfg.num_samples - start)
            chunk = chunk_of(condition, start, start + n, device)
            images.append(module.generate(chunk, n, guidance=guidance, sampler=sampler, generator=generator,
                                          use_ema=cfg.use_ema).cpu())
            progress.advance(n)
    images = torch.cat(images)
    folder = run_dir()
    write_file(folder / "samples.png", lambda tmp: save_image(to_unit(images), tmp, nrow=cfg.nrow,
                                                              padding=1))
    pixels = (to_unit(images) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = condition.get("label", torch.full((cfg.num_samples,), -1)).numpy()
    write_file(folder / "samples.npz", lambda tmp: np.savez_compressed(
        tmp, images=pixels, labels=labels, prompt=str(cfg.prompt or ""), guidance=guidance.name,
        guidance_scale=guidance.scale, guidance_config=OmegaConf.to_yaml(cfg.guidance, resolve=True),
        sampler=OmegaConf.to_yaml(cfg.sampler), checkpoint=str(path)))
    finish(cfg, {
        "task": "sample", "checkpoint": str(path), "num_samples": cfg.num_samples,
        "guidance": {"name": guidance.name, **OmegaConf.to_container(cfg.guidance, resolve=True)},
        "sampler": OmegaConf.to_container(cfg.sampler),
        "files": {"grid": "samples.png", "npz": "samples.npz"},  # in the run dir
    })
    print(f"wrote {folder / 'samples.png'} and {folder / 'samples.npz'}")
    return folder


main = command(sample, "sample", SampleSettings)

if __name__ == "__main__":
    main()
