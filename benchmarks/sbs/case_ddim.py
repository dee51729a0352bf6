"""Case 3: DDIM-50 + CFG sampling of N images including the decode, the SAME non-zero weights in both.

ours: ``GuidedDenoiser`` + ``ClassifierFreeGuidance`` + ``DDIMSampler`` (conf/sampler/ddim.yaml) on the
default ``backbone=small`` class-conditional UNet, then ``FirstStage.decode``. theirs: a diffusers
pipeline-style loop (``DDIMScheduler`` with the same schedule and trailing spacing, ``UNet2DConditionModel``
on [uncond; cond] encoder states, ``AutoencoderKL.decode``) on weights exported by ``ldmlab.interop``.
Zero-initialised weights (the UNet's output conv, transformer projections) are re-drawn so ε ≠ 0,
and the final images must agree to float tolerance (else the run fails).
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from ldmlab.first_stage.autoencoder import FirstStage
from ldmlab.guidance.base import GuidanceContext
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.sampling.denoiser import GuidedDenoiser
from sbs.common import Row, Settings, compare
from sbs.models import compose_config, our_autoencoder, params
from sbs.timing import autocast

TARGET = 1.5
NUM_IMAGES, SCALE = 40, 3.0
TOLERANCE = {"fp32": 1e-3, "bf16": 0.1}  # max |Δ pixel| on images in [-1, 1]


@torch.no_grad()
def redraw_zero_weights(module: torch.nn.Module, std: float = 0.05) -> None:
    """Give zero-initialised tensors (output conv, transformer proj_out) random values."""
    g = torch.Generator().manual_seed(1)
    for p in module.parameters():
        if not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def build(s: Settings, overrides: tuple[str, ...] = ()):
    """The composed train_ldm config (+ ``overrides``), a first stage with a fitted scale, our UNet
    and conditioner, and diffusers' VAE and UNet carrying the same weights."""
    from ldmlab.interop.autoencoder_kl import to_diffusers_vae
    from ldmlab.interop.unet2d import to_diffusers_unet

    cfg = compose_config("train_ldm", [f"sampler.steps={2 if s.quick else 50}", *overrides])
    torch.manual_seed(0)
    _, ae_cfg = our_autoencoder()
    first_stage = FirstStage(None, "", 4, 4, 1, autoencoder_config=ae_cfg)
    side = cfg.data.resolution
    first_stage.fit_scale(torch.rand(16, 1, side, side) * 2 - 1)
    unet, conditioner = instantiate(cfg.backbone).eval(), instantiate(cfg.conditioner).eval()
    redraw_zero_weights(unet)
    with torch.no_grad():
        conditioner.embedders["label"].table.weight.normal_()
    scale = float(first_stage.scale_factor)
    vae, their_unet = to_diffusers_vae(first_stage.autoencoder, scale), to_diffusers_unet(unet)
    return cfg, first_stage, unet, conditioner, vae, their_unet


def run(s: Settings, overrides: tuple[str, ...] = (), num_images: int = NUM_IMAGES) -> list[Row]:
    """``overrides``: of train_ldm (e.g. ``backbone=base``, ``data.resolution=128``); ``num_images``:
    N unless ``s.quick`` (2)."""
    from diffusers import DDIMScheduler

    cfg, first_stage, unet, conditioner, vae, their_unet = build(s, overrides)
    first_stage, unet, vae, their_unet = (m.to(s.device) for m in (first_stage, unet, vae, their_unet))
    conditioner = conditioner.to(s.device)
    n = 2 if s.quick else num_images
    labels = (torch.arange(n) % 10).to(s.device)
    latent = cfg.data.resolution // cfg.first_stage_downsample_factor
    noise = torch.randn(n, cfg.first_stage_embed_dim, latent, latent,
                        generator=torch.Generator().manual_seed(2)).to(s.device)
    schedule = instantiate(cfg.diffusion.schedule).to(s.device)
    parameterization = instantiate(cfg.diffusion.parameterization)
    sampler = instantiate(cfg.sampler)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=True,
                              timestep_spacing=cfg.sampler.spacing, prediction_type="epsilon", steps_offset=0)

    context = GuidanceContext(first_stage, schedule, tuple(noise.shape[1:]), conditioner)
    guidance = ClassifierFreeGuidance(SCALE).prepare(context)  # as LatentDiffusionModule.prepare_guidance

    @torch.no_grad()
    def ours() -> torch.Tensor:
        with autocast(s.device, s.dtype):
            cond = conditioner({"label": labels})
            uncond = conditioner.unconditional({"label": labels})
            denoise = GuidedDenoiser(unet, parameterization, schedule, cond, uncond, guidance)
            latents = sampler.sample(denoise, noise, schedule)
            return first_stage.decode(latents).float()

    table = conditioner.embedders["label"].table

    @torch.no_grad()
    def theirs() -> torch.Tensor:
        with autocast(s.device, s.dtype):
            null = table.weight[-1].expand(n, -1)
            hidden = torch.cat([null, table(labels)])[:, None]  # [uncond; cond], encoded once
            scheduler.set_timesteps(cfg.sampler.steps, device=s.device)
            latents = noise * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
                eps_u, eps_c = their_unet(model_input, t, encoder_hidden_states=hidden).sample.chunk(2)
                latents = scheduler.step(eps_u + SCALE * (eps_c - eps_u), t, latents, eta=0.0).prev_sample
            return vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1).float()

    images = ours()
    diff = float((images - theirs()).abs().max())
    agree = "PASS" if diff <= TOLERANCE[s.dtype] else "FAIL"
    what = f"DDIM-{cfg.sampler.steps} + CFG s={SCALE} sampling of N images incl. decode"
    return [compare("ddim_cfg_sample", what, n, ours, theirs,
                    (params(unet) + params(first_stage), params(their_unet) + params(vae)), TARGET, s,
                    max_abs_diff=f"{diff:.2e}", image_std=f"{float(images.std()):.3f}",
                    tolerance=TOLERANCE[s.dtype], agreement=agree)]
