"""Where a stage-1 checkpoint's error sits: background (real pixel at black) vs foreground.

    .venv/bin/python experiments/ae-fashion-mnist/background_error.py A.ckpt [B.ckpt ...]

On the first 500 validation images, in float32 (so PSNR/SSIM differ slightly from the bf16
validation): mean |x̂ − x| on background pixels (x = −1: 63 % of Fashion-MNIST's pixels) and on the
rest, the background error's spread, PSNR and SSIM (data range 1). A grey haze on the black
background costs SSIM far more than PSNR. Modules come from this project's train_ae config; the
checkpoint is read as weights only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torchmetrics.functional import structural_similarity_index_measure

from ldmlab.checkpoints import read_checkpoint

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def main(paths: list[str]) -> None:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train_ae", return_hydra_config=True)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    x = torch.stack([datamodule.val_set[i]["image"] for i in range(500)])
    background = x <= -0.99
    module = instantiate(cfg.module)
    for path in paths:
        module.load_state_dict(read_checkpoint(path, "ckpt", "give a train_ae checkpoint")["state_dict"])
        module.eval()
        error = module.reconstruct(x) - x
        ssim = structural_similarity_index_measure((error + x + 1) / 2, (x + 1) / 2, data_range=1.0)
        back = error[background]
        print(f"{path}: background |err| {back.abs().mean():.4f} (std {back.std():.4f}), "
              f"foreground |err| {error[~background].abs().mean():.4f}, "
              f"PSNR {10 * torch.log10(4 / error.pow(2).mean()):.2f}, SSIM {ssim:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
