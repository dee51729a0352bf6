"""Suite ``levers``: speed levers on ldmlab's own UNet (backbone=small, the default) vs its fp32
eager baseline.

Each variant against the plain float32 eager baseline, interleaved in one process (median of
repeats), for a training step and a CFG forward.

Variants: channels_last (model + inputs), bf16 autocast, torch.compile (default mode; compile time
reported separately), and 1 vs N threads (run twice with --threads). Prints ratios baseline/variant.
The training step uses the configured optimiser as the modules build it (fused AdamW).
  .venv/bin/python benchmarks/bench.py levers --threads 2 --variants channels_last,bf16,compile
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
from hydra.utils import instantiate

from ldmlab.backbones.unet import UNet
from ldmlab.optim.optimizers import build_optimizer
from sbs.case_unet import _inputs, cfg_forward, ours_forward, train_step
from sbs.common import Settings
from sbs.models import compose_config, unet_kwargs
from sbs.timing import interleaved


def variant(name: str, kw: dict, batch: int, s: Settings, optimizer_config):
    """(train step, CFG forward) closures of one variant on its own freshly seeded UNet."""
    torch.manual_seed(0)
    net = UNet(**kw)
    x, t, ctx, null, noise = _inputs(batch, kw, "cpu")
    forward = ours_forward
    if name == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if name == "compile":
        compiled = torch.compile(net)

        def forward(_, x_, t_, c_):
            return compiled(x_, t_, {"crossattn": c_})
    dtype = "bf16" if name == "bf16" else "fp32"
    vs = Settings("cpu", dtype, s.threads, s.repeats, s.warmup, False)
    precision = "bf16-mixed" if dtype == "bf16" else "32-true"
    make_optimizer = partial(build_optimizer, optimizer_config, key="module.optimizer", precision=precision)
    train = train_step(net.train(), forward, x, t, ctx, noise, vs, make_optimizer)
    start = time.perf_counter()
    train()
    first_train = time.perf_counter() - start
    net.eval()
    cfg = cfg_forward(net, forward, x, t, ctx, null, vs)
    start = time.perf_counter()
    cfg()
    first_cfg = time.perf_counter() - start
    return net, train, cfg, first_train, first_cfg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--variants", default="channels_last,bf16,compile")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    torch.set_num_threads(args.threads)
    s = Settings("cpu", "fp32", args.threads, args.repeats, 2, False)
    cfg = compose_config("train_ldm")
    kw, optimizer_config = unet_kwargs(cfg), instantiate(cfg.module.optimizer)
    print(f"ldmlab UNet backbone=small, B={args.batch}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    base = variant("baseline", kw, args.batch, s, optimizer_config)
    for name in args.variants.split(","):
        other = variant(name, kw, args.batch, s, optimizer_config)
        for idx, what in ((1, "train step"), (2, "CFG forward")):
            base[0].train(idx == 1), other[0].train(idx == 1)
            times = interleaved({"base": base[idx], name: other[idx]}, s.repeats, s.warmup, "cpu")
            first = other[3] if idx == 1 else other[4]
            print(f"  {name:<14} {what:<12} baseline {times['base'] * 1e3:8.1f} ms  {name} "
                  f"{times[name] * 1e3:8.1f} ms  speed-up {times['base'] / times[name]:.2f}x  "
                  f"(first call {first:.1f} s)", flush=True)
