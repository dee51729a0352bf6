"""Suite ``ae``: stage-1 step cost: our LPIPS vs the official ``lpips`` package, and float32 vs bf16 autocast.

Times, side by side in one process on the same inputs (batch of Fashion-MNIST-sized images):

1. LPIPS-VGG16 forward + backward, ours vs the official package (same architecture; random
   weights, which do not change the cost);
2. the default autoencoder's generator step (encode, decode, L1 + LPIPS, backward) in float32
   and under bf16 autocast (what ``trainer.precision=auto`` picks on a bf16-capable CPU/GPU).

Prints seconds per step (mean of ``--repeats`` after one warm-up) and the ratios. ``make bench-ae``.
"""

from __future__ import annotations

import argparse
import contextlib
import warnings

import torch

from sbs.timing import mean_seconds  # its warm-up call creates oneDNN primitives and autocast casts


def lpips_step(metric, x: torch.Tensor):
    def step() -> None:
        y = x.flip(0).clone().requires_grad_(True)
        metric(x, y).sum().backward()
    return step


def generator_step(autoencoder, lpips, x: torch.Tensor, autocast: bool):
    def step() -> None:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with context:
            x_rec, _ = autoencoder(x)
            loss = (x_rec - x).abs().mean() + lpips(x, x_rec).mean()
        autoencoder.zero_grad(set_to_none=True)
        loss.backward()
    return step


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import lpips as official_lpips
    from hydra.utils import instantiate

    from ldmlab.nn.lpips import LPIPS
    from ldmlab.utils.precision import cpu_has_native_bf16
    from sbs.models import compose_config

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"native CPU bf16: {cpu_has_native_bf16()}, batch {args.batch_size}, {args.resolution}²")

    rgb = torch.rand(args.batch_size, 3, args.resolution, args.resolution) * 2 - 1
    ours = LPIPS(pretrained=False).eval()
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        official = official_lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False).eval()
    t_ours = mean_seconds(lpips_step(ours, rgb), args.repeats)
    t_official = mean_seconds(lpips_step(official, rgb), args.repeats)
    print(f"LPIPS fwd+bwd  ours {t_ours:.4f} s   official lpips {t_official:.4f} s   "
          f"ours/official {t_ours / t_official:.3f}")

    cfg = compose_config("train_ae")
    autoencoder = instantiate(cfg.autoencoder)
    gray = torch.rand(args.batch_size, 1, args.resolution, args.resolution) * 2 - 1
    t_fp32 = mean_seconds(generator_step(autoencoder, ours, gray, autocast=False), args.repeats)
    t_bf16 = mean_seconds(generator_step(autoencoder, ours, gray, autocast=True), args.repeats)
    print(f"AE generator step  float32 {t_fp32:.4f} s   bf16 autocast {t_bf16:.4f} s   "
          f"float32/bf16 {t_fp32 / t_bf16:.2f}x")
