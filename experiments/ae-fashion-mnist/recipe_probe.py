"""Short stage-1 recipe probes: val PSNR against training time, without the GAN.

Runs the autoencoder's generator step (the same modules and loss as ``make train-ae``) in a
plain loop under bf16 autocast, with the configured warm-up + cosine LR, and prints one JSON
line per evaluation step: wall seconds of training so far and PSNR of eval-mode
reconstructions of the first 1000 validation images (pooled MSE, as torchmetrics computes it).

    .venv/bin/python experiments/ae-fashion-mnist/recipe_probe.py 1000 500,1000 loss.reconstruction=l2

Positional: total steps, comma-separated evaluation steps, then Hydra overrides of train_ae.
``NUM_THREADS`` sets torch's thread count (default 2).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torchmetrics.functional.image import peak_signal_noise_ratio

from ldmlab.optim.lr_schedules import warmup_cosine

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


@torch.no_grad()
def pooled_psnr(autoencoder: torch.nn.Module, images: torch.Tensor) -> float:
    autoencoder.eval()
    rec = torch.cat([autoencoder(chunk)[0].clamp(-1, 1) for chunk in images.split(100)])
    autoencoder.train()
    return float(peak_signal_noise_ratio((rec + 1) / 2, (images + 1) / 2, data_range=1.0))


def main(total: int, eval_steps: set[int], overrides: list[str]) -> None:
    torch.set_num_threads(int(os.environ.get("NUM_THREADS", "2")))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train_ae", overrides=["loss.disc_factor=0", *overrides])
    torch.manual_seed(cfg.seed)
    autoencoder, loss = instantiate(cfg.autoencoder), instantiate(cfg.loss)
    data = instantiate(cfg.data)
    data.prepare_data()
    data.setup("fit")
    val = torch.cat([batch["image"] for batch in data.val_dataloader()])[:1000]
    params = list(autoencoder.parameters()) + loss.generator_parameters()
    optimizer = instantiate(cfg.module.optimizer)(params=params)
    schedule = warmup_cosine(optimizer, cfg.module.warmup_steps, total, cfg.module.final_lr_ratio)
    step, trained_s, batches = 0, 0.0, iter(data.train_dataloader())
    while step < total:
        start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            batches = iter(data.train_dataloader())
            batch = next(batches)
        x = batch["image"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_rec, reg = autoencoder(x)
            objective, _ = loss.generator_step(x, x_rec, reg, step, autoencoder.last_layer)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.module.gradient_clip_val)
        optimizer.step()
        schedule.step()
        step += 1
        trained_s += time.perf_counter() - start
        if step in eval_steps:
            result = {"step": step, "train_s": round(trained_s, 1),
                      "psnr": round(pooled_psnr(autoencoder, val), 2), "overrides": overrides}
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), {int(s) for s in sys.argv[2].split(",")}, sys.argv[3:])
