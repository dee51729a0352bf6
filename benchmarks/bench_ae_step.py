"""Stage-1 step cost: our LPIPS vs the official ``lpips`` package, and float32 vs bf16 autocast.

Times, side by side in one process on the same inputs (batch of Fashion-MNIST-sized images):

1. LPIPS-VGG16 forward + backward, ours vs the official package (same architecture; random
   weights, which do not change the cost);
2. the default autoencoder's generator step (encode, decode, L1 + LPIPS, backward) in float32
   and under bf16 autocast (what ``trainer.precision=auto`` picks on a bf16-capable CPU/GPU).

Prints seconds per step and the ratios. ``make benchmark-ae``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from pathlib import Path

import lpips as official_lpips
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ldmlab.nn.lpips import LPIPS
from ldmlab.utils.precision import cpu_has_native_bf16

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def seconds_per_call(step, repeats: int) -> float:
    step()  # warm-up (oneDNN primitive creation, autocast weight casts)
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def lpips_step(metric, x: torch.Tensor):
    def step() -> None:
        y = x.flip(0).clone().requires_grad_(True)
        metric(x, y).sum().backward()
    return step


def generator_step(autoencoder, lpips: LPIPS, x: torch.Tensor, autocast: bool):
    def step() -> None:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with context:
            x_rec, _ = autoencoder(x)
            loss = (x_rec - x).abs().mean() + lpips(x, x_rec).mean()
        autoencoder.zero_grad(set_to_none=True)
        loss.backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"native CPU bf16: {cpu_has_native_bf16()}, batch {args.batch_size}, {args.resolution}²")

    rgb = torch.rand(args.batch_size, 3, args.resolution, args.resolution) * 2 - 1
    ours = LPIPS(pretrained=False).eval()
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        official = official_lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False).eval()
    t_ours = seconds_per_call(lpips_step(ours, rgb), args.repeats)
    t_official = seconds_per_call(lpips_step(official, rgb), args.repeats)
    print(f"LPIPS fwd+bwd  ours {t_ours:.4f} s   official lpips {t_official:.4f} s   "
          f"ours/official {t_ours / t_official:.3f}")

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train_ae")
    autoencoder = instantiate(cfg.autoencoder)
    gray = torch.rand(args.batch_size, 1, args.resolution, args.resolution) * 2 - 1
    t_fp32 = seconds_per_call(generator_step(autoencoder, ours, gray, autocast=False), args.repeats)
    t_bf16 = seconds_per_call(generator_step(autoencoder, ours, gray, autocast=True), args.repeats)
    print(f"AE generator step  float32 {t_fp32:.4f} s   bf16 autocast {t_bf16:.4f} s   "
          f"float32/bf16 {t_fp32 / t_bf16:.2f}x")


if __name__ == "__main__":
    main()
