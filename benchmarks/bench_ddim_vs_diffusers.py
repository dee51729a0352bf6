"""DDIM sampling: ldmlab's sampler vs diffusers' DDIMScheduler, side by side in one process.

Both drive the SAME denoiser network (ldmlab's UNet, random weights, class-conditional via
cross-attention, with CFG batched 2B) on the same noise, the same scaled-linear schedule and
trailing spacing, so the timing ratio isolates the sampler loop, and the final latents must
agree to float32 round-off. Run: ``.venv/bin/python benchmarks/bench_ddim_vs_diffusers.py``.
"""

from __future__ import annotations

import argparse
import time

import torch

from ldmlab.backbones.unet import UNet
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.ddim import DDIMSampler


def build(batch: int):
    torch.manual_seed(0)
    unet = UNet(4, 4, 64, [1, 2], 2, [1, 2], 4, context_dim=128).eval()
    conditioner = Conditioner({"label": ClassEmbedder(10, 128)}).eval()
    labels = torch.arange(batch) % 10
    cond, uncond = conditioner({"label": labels}), conditioner.unconditional({"label": labels})
    return unet, cond, uncond


@torch.no_grad()
def run_ldmlab(unet, cond, uncond, noise, steps, scale):
    schedule = ScaledLinearSchedule()
    denoise = GuidedDenoiser(unet, EpsParameterization(), schedule, cond, uncond,
                             ClassifierFreeGuidance(scale))
    return DDIMSampler(steps=steps, spacing="trailing").sample(denoise, noise, schedule)


@torch.no_grad()
def run_diffusers(unet, cond, uncond, noise, steps, scale):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=True,
                              timestep_spacing="trailing", prediction_type="epsilon")
    scheduler.set_timesteps(steps)
    batched = {k: torch.cat([cond[k], uncond[k]]) for k in cond}
    x = noise
    for t in scheduler.timesteps:
        t_batch = torch.full((2 * len(x),), int(t), dtype=torch.long)
        eps_c, eps_u = unet(torch.cat([x, x]), t_batch, batched).chunk(2)
        x = scheduler.step(eps_u + scale * (eps_c - eps_u), t, x, eta=0.0).prev_sample
    return x


def timed(fn, repeats: int):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    unet, cond, uncond = build(args.batch)
    noise = torch.randn(args.batch, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ours_s, ours = timed(lambda: run_ldmlab(unet, cond, uncond, noise, args.steps, args.scale), args.repeats)
    peer_s, peer = timed(lambda: run_diffusers(unet, cond, uncond, noise, args.steps, args.scale),
                         args.repeats)
    diff = (ours - peer).abs().max().item()
    print(f"DDIM {args.steps} steps, batch {args.batch}, CFG s={args.scale}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"  ldmlab   {ours_s * 1000:8.1f} ms per sampling run")
    print(f"  diffusers{peer_s * 1000:8.1f} ms per sampling run")
    print(f"  ratio ldmlab/diffusers = {ours_s / peer_s:.3f}   max |Δ latents| = {diff:.2e}")


if __name__ == "__main__":
    main()
