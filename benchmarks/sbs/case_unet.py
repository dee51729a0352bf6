"""Case 2: the UNet alone, architecture-matched: one training step and one CFG forward (2B batch)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from ldmlab.backbones.unet import UNet
from ldmlab.optim.optimizers import build_optimizer
from sbs.common import Row, Settings, compare
from sbs.models import compose_config, diffusers_unet, params, unet_kwargs
from sbs.timing import autocast

TRAIN_TARGET, CFG_TARGET = 1.3, 1.5
BATCH = {"small": 64, "base": 2}  # base (221M params): ~5 s per step on 2 cores, so B=2, 3 repeats
REPEATS = {"small": None, "base": 3}
SCALE = 3.0


def _inputs(batch: int, kw: dict, device: str, side: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, kw["in_channels"], side, side, generator=g).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    ctx = torch.randn(batch, 1, kw["context_dim"], generator=g).to(device)
    null = torch.randn(1, 1, kw["context_dim"], generator=g).expand(batch, -1, -1).to(device)
    return x, t, ctx, null, torch.randn_like(x)


def train_step(net, forward, x, t, ctx, noise, s: Settings, make_optimizer):
    optimizer = make_optimizer(net.parameters())

    def step() -> None:
        with autocast(s.device, s.dtype):
            loss = F.mse_loss(forward(net, x, t, ctx).float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def cfg_forward(net, forward, x, t, ctx, null, s: Settings):
    @torch.no_grad()
    def step() -> torch.Tensor:
        with autocast(s.device, s.dtype):
            out = forward(net, torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx, null]))
        cond, uncond = out.float().chunk(2)
        return uncond + SCALE * (cond - uncond)
    return step


def ours_forward(net, x, t, ctx):
    return net(x, t, {"crossattn": ctx})


def theirs_forward(net, x, t, ctx):
    return net(x, t, encoder_hidden_states=ctx).sample


def run(s: Settings, sizes: tuple[str, ...] = ("small", "base")) -> list[Row]:
    rows = []
    for size in sizes:
        cfg = compose_config("train_ldm", [f"backbone={size}"])
        kw = unet_kwargs(cfg)
        # ours: the configured optimiser as the modules build it (fused AdamW; foreach under mixed
        # precision); theirs: AdamW as diffusers' examples build it
        precision = "bf16-mixed" if s.dtype == "bf16" else "32-true"
        ours_optimizer = partial(build_optimizer, instantiate(cfg.module.optimizer), key="module.optimizer",
                                 precision=precision)
        opt = cfg.module.optimizer
        theirs_optimizer = partial(torch.optim.AdamW, lr=opt.lr, weight_decay=opt.weight_decay)
        if s.quick:
            kw |= {"model_channels": 32, "num_heads": 4} if size == "base" else {}
        batch = 2 if s.quick else BATCH[size]
        sized = s
        if REPEATS[size] and not s.quick:
            sized = replace(s, repeats=min(s.repeats, REPEATS[size]), warmup=1)
        torch.manual_seed(0)
        ours, theirs = UNet(**kw).to(s.device).train(), diffusers_unet(kw).to(s.device).train()
        counts = (params(ours), params(theirs))
        x, t, ctx, null, noise = _inputs(batch, kw, s.device)
        rows.append(compare(
            f"unet_{size}_train", f"UNet backbone={size} training step (fwd+MSE+bwd+AdamW)", batch,
            train_step(ours, ours_forward, x, t, ctx, noise, sized, ours_optimizer),
            train_step(theirs, theirs_forward, x, t, ctx, noise, sized, theirs_optimizer), counts,
            TRAIN_TARGET, sized))
        ours.eval(), theirs.eval()
        rows.append(compare(
            f"unet_{size}_cfg", f"UNet backbone={size} CFG forward (2B={2 * batch}, no grad)", batch,
            cfg_forward(ours, ours_forward, x, t, ctx, null, sized),
            cfg_forward(theirs, theirs_forward, x, t, ctx, null, sized), counts, CFG_TARGET, sized))
    return rows
