"""Case 1: one stage-2 training step from a batch of images, end to end.

ours: the composed ``conf/train_ldm.yaml`` module (random f=4 KL autoencoder in place of a trained
checkpoint): latents from the latent cache (``module.latent_cache``, the default; the training loader
then serves ``batch["latent"]``, the unscaled E(x), instead of images) → ``DiffusionObjective`` loss →
backward → clip → AdamW + warm-up LR → EMA, as Lightning runs it per step (Lightning's own loop
overhead not included). ``stage2_step_nocache``: the same with the first stage encoding every batch.
theirs: diffusers' training-example recipe with architecture-matched VAE and UNet:
``vae.encode(x).latent_dist.sample() * scaling_factor`` → ``DDPMScheduler.add_noise`` →
``UNet2DConditionModel`` with class labels as ``encoder_hidden_states`` through an ``nn.Embedding``
(null row, same 10 % label dropout) → MSE → backward → clip → AdamW + warm-up → ``EMAModel.step``.
"""

from __future__ import annotations

from functools import partial

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from ldmlab.first_stage.autoencoder import FirstStage
from sbs.common import Row, Settings
from sbs.models import compose_config, diffusers_unet, diffusers_vae, our_autoencoder, params, unet_kwargs
from sbs.timing import autocast, interleaved, peak_memory_mb

TARGET = 1.5
BATCH = 64  # data.batch_size of train_ldm
P_UNCOND, NUM_CLASSES = 0.1, 10


def batch_of_images(batch: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": (torch.rand(batch, 1, 32, 32, generator=g) * 2 - 1).to(device),
            "label": torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device),
            "index": torch.randperm(batch, generator=g).to(device)}


def ours_step(batch: dict, s: Settings, overrides: list[str]):
    """The LatentDiffusionModule of the composed config and a closure running one optimiser step."""
    cfg = compose_config("train_ldm", overrides)
    _, ae_cfg = our_autoencoder()
    first_stage = FirstStage(None, "", 4, 4, 1, autoencoder_config=ae_cfg)
    module = instantiate(cfg.module, first_stage=first_stage).to(s.device).train()
    module.first_stage.fit_scale(batch["image"])
    with torch.no_grad():  # what the cached loader serves for this batch: unscaled E(x), no pixels
        latents = module.first_stage.unscaled(batch["image"])
    served = {"latent": latents, "label": batch["label"], "index": batch["index"]}
    precision = "bf16-mixed" if s.dtype == "bf16" else "32-true"  # Lightning's, for the optimiser's choice
    module.trainer = pl.Trainer(accelerator=s.device, devices=1, precision=precision, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
    optim = module.configure_optimizers()
    optimizer, scheduler = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    clip = cfg.trainer.gradient_clip_val

    def step(cached: bool) -> float:
        with autocast(s.device, s.dtype):
            loss = module.diffusion_loss(served if cached else batch, module.model)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        module.ema.update(module.model)
        return float(loss)  # the progress-bar log syncs once per step
    return module, cfg, step


def theirs_step(batch: dict, s: Settings, cfg, scale: float):
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    _, ae_cfg = our_autoencoder()
    vae = diffusers_vae(ae_cfg, scaling_factor=scale).to(s.device).requires_grad_(False)
    unet = diffusers_unet(unet_kwargs(cfg)).to(s.device).train()
    embedding = nn.Embedding(NUM_CLASSES + 1, cfg.conditioner_context_dim).to(s.device)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear")
    trained = list(unet.parameters()) + list(embedding.parameters())
    opt = cfg.module.optimizer
    optimizer = torch.optim.AdamW(trained, lr=opt.lr, weight_decay=opt.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.module.warmup_steps)
    ema = EMAModel(trained, decay=cfg.module.ema_decay)
    clip = cfg.trainer.gradient_clip_val

    def step() -> float:
        images, labels = batch["image"], batch["label"]
        with autocast(s.device, s.dtype):
            with torch.no_grad():
                latents = vae.encode(images).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), device=s.device)
            noisy = noise_scheduler.add_noise(latents, noise, t)
            drop = torch.rand(len(labels), device=s.device) < P_UNCOND
            hidden = embedding(torch.where(drop, NUM_CLASSES, labels))[:, None]
            pred = unet(noisy, t, hidden).sample
        return diffusers_update(F.mse_loss(pred.float(), noise.float()), trained, clip, optimizer,
                                lr_scheduler, ema)
    return vae, unet, embedding, step


def diffusers_update(loss: torch.Tensor, trained: list, clip: float, optimizer, lr_scheduler, ema) -> float:
    """The training example's update after the loss: backward → clip → AdamW → LR step → EMA."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trained, clip)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    ema.step(trained)
    return float(loss)


def run(s: Settings) -> list[Row]:
    batch_size = 4 if s.quick else BATCH
    batch = batch_of_images(batch_size, s.device)
    overrides = [f"data.batch_size={batch_size}"]
    torch.manual_seed(0)
    module, cfg, ours = ours_step(batch, s, overrides)
    vae, unet, embedding, theirs = theirs_step(batch, s, cfg, float(module.first_stage.scale_factor))
    counts = (params(module.first_stage) + params(module.model),
              params(vae) + params(unet) + params(embedding))
    fns = {"cache": partial(ours, True), "nocache": partial(ours, False), "theirs": theirs}
    times = interleaved(fns, s.repeats, s.warmup, s.device)
    mem = {name: peak_memory_mb(fn, s.device) for name, fn in fns.items()}
    what = "stage-2 step from images: {} → loss → bwd → clip → AdamW → EMA"
    vaes = f"{params(module.first_stage):,} / {params(vae):,} (ours / theirs)"
    return [Row(case, what.format(enc), batch_size, times[name], times["theirs"], *counts, mem[name],
                mem["theirs"], target, {"first_stage_params": vaes})
            for case, name, enc, target in (("stage2_step", "cache", "latent cache (default)", TARGET),
                                            ("stage2_step_nocache", "nocache", "encode", None))]
