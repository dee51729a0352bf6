"""Case 4: the DDIM sampler loop alone: ldmlab's sampler vs diffusers' ``DDIMScheduler``, side by side.

Both drive the SAME denoiser network (ldmlab's UNet, random weights, class-conditional via
cross-attention, with CFG batched 2B) on the same noise, the same scaled-linear schedule and
trailing spacing, so the ratio isolates the sampler loop, and the final latents must agree to
float32 round-off (else the run fails). B=16, 25 steps, s=3 (quick: B=2, 2 steps).
"""

from __future__ import annotations

import torch

from ldmlab.backbones.unet import UNet
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.guidance.base import GuidanceContext
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.ddim import DDIMSampler
from sbs.common import Row, Settings, compare
from sbs.models import params
from sbs.timing import autocast

BATCH, STEPS, SCALE = 16, 25, 3.0
TOLERANCE = {"fp32": 1e-3, "bf16": 0.1}  # max |Δ latents|; measured 3.8e-5 in fp32


def build(batch: int):
    torch.manual_seed(0)
    unet = UNet(4, 4, 64, [1, 2], 2, [1, 2], 4, context_dim=128).eval()
    conditioner = Conditioner({"label": ClassEmbedder(10, 128)}).eval()
    labels = torch.arange(batch) % 10
    cond, uncond = conditioner({"label": labels}), conditioner.unconditional({"label": labels})
    return unet, conditioner, cond, uncond


def run(s: Settings) -> list[Row]:
    from diffusers import DDIMScheduler

    batch, steps = (2, 2) if s.quick else (BATCH, STEPS)
    unet, conditioner, cond, uncond = build(batch)
    unet = unet.to(s.device)
    cond, uncond = ({k: v.to(s.device) for k, v in c.items()} for c in (cond, uncond))
    noise = torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(1)).to(s.device)
    schedule = ScaledLinearSchedule().to(s.device)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=True,
                              timestep_spacing="trailing", prediction_type="epsilon")
    batched = {k: torch.cat([cond[k], uncond[k]]) for k in cond}
    guidance = ClassifierFreeGuidance(SCALE).prepare(GuidanceContext(None, schedule, (4, 8, 8), conditioner))

    @torch.no_grad()
    def ours() -> torch.Tensor:
        with autocast(s.device, s.dtype):
            denoise = GuidedDenoiser(unet, EpsParameterization(), schedule, cond, uncond, guidance)
            return DDIMSampler(steps=steps, spacing="trailing").sample(denoise, noise, schedule).float()

    @torch.no_grad()
    def theirs() -> torch.Tensor:
        with autocast(s.device, s.dtype):
            scheduler.set_timesteps(steps)
            x = noise
            for t in scheduler.timesteps:
                t_batch = torch.full((2 * len(x),), int(t), dtype=torch.long, device=s.device)
                eps_c, eps_u = unet(torch.cat([x, x]), t_batch, batched).float().chunk(2)
                x = scheduler.step(eps_u + SCALE * (eps_c - eps_u), t, x, eta=0.0).prev_sample
            return x

    diff = float((ours() - theirs()).abs().max())
    agree = "PASS" if diff <= TOLERANCE[s.dtype] else "FAIL"
    n = params(unet)
    return [compare("ddim_loop", f"DDIM-{steps} sampler loop + CFG s={SCALE}, same network, latents only",
                    batch, ours, theirs, (n, n), None, s, max_abs_diff=f"{diff:.2e}",
                    tolerance=TOLERANCE[s.dtype], agreement=agree)]
