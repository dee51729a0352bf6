"""Suite ``diffusers``: ldmlab vs diffusers, side by side in one process (same shapes, dtype, threads,
interleaved repeats).

Cases (``--cases``, comma-separated; default all):
  stage2     stage-2 training step from images (first stage encode, loss, backward, AdamW, EMA)
  unet       UNet-only training step and CFG forward for backbone=small and backbone=base
             (or unet_small, unet_base)
  dit        DiT-only training step and CFG forward (conf/backbone/dit.yaml, class_vector labels) vs
             ``DiTTransformer2DModel`` carrying the SAME weights; agreement check on the outputs first
  ddim       DDIM-50 + CFG sampling with decode, the SAME weights in both; agreement check
  ddim_loop  the DDIM sampler loop alone: ldmlab's sampler vs ``DDIMScheduler`` driving the SAME network;
             agreement check on the final latents
  stage1     stage-1 training step (AE + LPIPS + patch discriminator)
  loop       the framework's per-step overhead: the real ``ldmlab.train`` loop (Lightning, latent
             cache, logging) vs a bare PyTorch loop doing the same maths (the peer here is not diffusers)
One line per case (ours, theirs, ratio = theirs_time / ours_time, PASS/MISS against its target)
and ``benchmarks/results/<case>.json``. Exit 1 only when an agreement check fails.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import torch

from sbs.common import Settings
from sbs.report import RESULTS, environment, line, write

CASES = {"stage2": ("sbs.case_stage2", {}), "unet": ("sbs.case_unet", {}), "ddim": ("sbs.case_ddim", {}),
         "ddim_loop": ("sbs.case_ddim_loop", {}), "stage1": ("sbs.case_stage1", {}),
         "unet_small": ("sbs.case_unet", {"sizes": ("small",)}),
         "unet_base": ("sbs.case_unet", {"sizes": ("base",)}), "dit": ("sbs.case_dit", {}),
         "loop": ("sbs.case_train_loop", {})}
DEFAULT = "stage2,unet,dit,ddim,ddim_loop,stage1,loop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", default=DEFAULT, help=f"comma-separated subset of {list(CASES)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 warm-up, 2 repeats")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                        help="bf16 = autocast (bf16-mixed)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per side (default 7, quick 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where <case>.json go (default {RESULTS}; --quick: a temporary dir)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else RESULTS)
    torch.set_num_threads(args.threads)
    s = Settings(args.device, args.dtype, args.threads, args.repeats or (2 if args.quick else 7),
                 1 if args.quick else 2, args.quick)
    env = environment(s)
    print(f"ldmlab vs diffusers {env['diffusers']} | torch {env['torch']} | {env['cpu']} | device {s.device} "
          f"| {env['threads']} threads (both) | {s.dtype} | median of {s.repeats} interleaved repeats")
    failed = False
    for name in args.cases.split(","):
        module, kwargs = CASES[name]
        for row in importlib.import_module(module).run(s, **kwargs):
            print(line(row), flush=True)
            for key, value in row.extra.items():
                print(f"    {key}: {value}")
            write(row, s, out)
            failed |= row.extra.get("agreement") == "FAIL"
    if failed:
        print("agreement check FAILED", file=sys.stderr)
    return 1 if failed else 0
