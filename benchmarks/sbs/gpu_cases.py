"""The units of ``benchmarks/gpu_check.py``, each timed alone (built, warmed up, timed, freed):

  stage2_*   one stage-2 training step of a real-scale backbone on 32×32×4 latents (128² images
             through the f=4 autoencoder): ours (``case_stage2.ours_step``: the composed train_ldm
             module, latents as the latent cache serves them, objective, clip, AdamW, EMA) eager and
             with the backbone ``torch.compile``d; diffusers' training-example recipe (VAE encode
             per step, ``DDPMScheduler``, UNet2DConditionModel via ``case_stage2.theirs_step`` or
             an architecture-matched ``DiTTransformer2DModel``, clip, AdamW, ``EMAModel``)
  stage1_256 the stage-1 step (AE + LPIPS + patch discriminator) on 256² RGB, B=8: train_ae's
             autoencoder (KL f=4, ch 32) with data.channels=3 vs diffusers' ``AutoencoderKL``
             (``case_stage1``)
  ddim50_cfg DDIM-50 + CFG sampling with the base UNet on 32×32×4 latents incl. decode, the SAME
             weights in both, agreement checked (``case_ddim``)

FLOPs per call (for TFLOP/s and MFU): stage 2 = 3 × the backbone's forward (training path) × B,
as ``DenoiserThroughput`` counts; DDIM = steps × 2N × the forward (inference path); stage 1 =
one of our steps counted by ``FlopCounterMode`` (generator and discriminator, forward and
backward). diffusers' side is credited with our count (the same architecture, the same work).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from ldmlab.backbones.flops import forward_flops_per_image, train_flops_per_image
from sbs import case_ddim, case_stage1
from sbs.case_stage2 import diffusers_update, ours_step, theirs_step
from sbs.common import Row, Settings
from sbs.models import compose_config, diffusers_vae, our_autoencoder, params
from sbs.timing import autocast, interleaved, peak_memory_mb

LATENT, F_AE = 32, 4  # 32×32×4 latents from 128² images (the f=4 autoencoder)
QUICK_LATENT = 8
UNET_QUICK = ("backbone.model_channels=32", "backbone.num_heads=4")
DIT_QUICK = ("backbone.hidden_size=64", "backbone.depth=2", "backbone.num_heads=2")
# case: (train_ldm overrides, batch, quick overrides)
STAGE2 = {
    "stage2_unet_base": (("backbone=base",), 64, UNET_QUICK),
    "stage2_dit_b2": (("backbone=dit_b", "conditioner=class_vector"), 64, DIT_QUICK),
    "stage2_dit_xl2": (("backbone=dit_xl", "conditioner=class_vector"), 32, DIT_QUICK),
}
STAGE1_SIDE, STAGE1_BATCH = 256, 8
DDIM_IMAGES = 64


@dataclass
class Measured:
    """One side of one case: median seconds per call, FLOPs per call (None: not counted), peak
    extra memory of one call over the resident weights and optimiser state (MiB,
    ``sbs.timing.peak_memory_mb``) and anything else to report (stage 2: the first call's
    seconds, compile included, and the resident MiB on CUDA)."""

    case: str
    side: str
    batch: int
    seconds: float
    params: int
    flops: float | None
    mem_mb: float
    extra: dict = field(default_factory=dict)


@dataclass
class Unit:
    """What ``gpu_check`` guards and times: ``run(settings)`` → measured sides; ``late``: run after
    every other unit (the compiled variants, the first to skip when the time budget is spent)."""

    case: str
    side: str
    run: Callable[[Settings], list[Measured]]
    late: bool = False


@dataclass
class Step:
    """A built side: the step, its parameter count and FLOPs per call."""

    fn: Callable[[], object]
    params: int
    flops: float


def images(batch: int, side: int, device: str) -> dict:
    """1-channel images in [-1, 1] (the default autoencoder's input), labels and indices."""
    g = torch.Generator().manual_seed(0)
    return {"image": (torch.rand(batch, 1, side, side, generator=g) * 2 - 1).to(device),
            "label": torch.randint(0, 10, (batch,), generator=g).to(device),
            "index": torch.arange(batch).to(device)}


def _stage2_config(case: str, s: Settings) -> tuple[list[str], int, int]:
    overrides, batch, quick = STAGE2[case]
    latent, batch = (QUICK_LATENT, 2) if s.quick else (LATENT, batch)
    return [*overrides, *(quick if s.quick else ()), f"data.resolution={latent * F_AE}",
            f"data.batch_size={batch}"], batch, latent


def _train_flops(cfg, latent: int, batch: int) -> float:
    with torch.device("meta"):
        net = instantiate(cfg.backbone)
    return float(train_flops_per_image(forward_flops_per_image(net, latent, training=True)) * batch)


def ours_stage2(case: str, compile_backend: str | None, s: Settings) -> Step:
    """Our stage-2 step; ``compile_backend``: ``torch.compile`` the backbone in place with it."""
    overrides, batch, latent = _stage2_config(case, s)
    module, cfg, step = ours_step(images(batch, latent * F_AE, s.device), s, overrides)
    if compile_backend:
        module.model["backbone"].compile(backend=compile_backend)
    return Step(partial(step, True), params(module.model["backbone"]), _train_flops(cfg, latent, batch))


def theirs_stage2(case: str, s: Settings) -> Step:
    """diffusers' training-example recipe with the architecture-matched UNet or DiT."""
    overrides, batch, latent = _stage2_config(case, s)
    cfg = compose_config("train_ldm", overrides)
    batch_images = images(batch, latent * F_AE, s.device)
    if "dit" in case:
        net, step = theirs_dit_step(batch_images, s, cfg)
    else:
        _, net, _, step = theirs_step(batch_images, s, cfg, scale=1.0)
    return Step(step, params(net), _train_flops(cfg, latent, batch))


def theirs_dit_step(batch: dict, s: Settings, cfg):
    """``case_stage2.theirs_step`` with a ``DiTTransformer2DModel`` (class labels in, its own 10 %
    label dropout in training mode) in place of the UNet, and DiT's linear β schedule."""
    from diffusers import DDPMScheduler, DiTTransformer2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from ldmlab.interop.dit import diffusers_dit_config

    _, ae_cfg = our_autoencoder()
    vae = diffusers_vae(ae_cfg).to(s.device).requires_grad_(False)
    with torch.device("meta"):
        shape = instantiate(cfg.backbone)
    num_classes = cfg.conditioner.embedders.label.num_classes
    net = DiTTransformer2DModel(**diffusers_dit_config(shape, num_classes)).to(s.device).train()
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    opt = cfg.module.optimizer
    trained = list(net.parameters())
    optimizer = torch.optim.AdamW(trained, lr=opt.lr, weight_decay=opt.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.module.warmup_steps)
    ema = EMAModel(trained, decay=cfg.module.ema_decay)
    clip = cfg.trainer.gradient_clip_val

    def step() -> float:
        with autocast(s.device, s.dtype):
            with torch.no_grad():
                latents = vae.encode(batch["image"]).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), device=s.device)
            pred = net(noise_scheduler.add_noise(latents, noise, t), timestep=t,
                       class_labels=batch["label"]).sample
        return diffusers_update(F.mse_loss(pred.float(), noise.float()), trained, clip, optimizer,
                                lr_scheduler, ema)
    return net, step


def stage1(s: Settings) -> list[Measured]:
    """``case_stage1`` at 256² RGB; FLOPs: one of our steps under ``FlopCounterMode``."""
    side, batch = (32, 2) if s.quick else (STAGE1_SIDE, STAGE1_BATCH)
    overrides = ("data.channels=3",)
    row = case_stage1.run(s, side=side, overrides=overrides, batch=batch)[0]
    flops = _stage1_flops(s, side, batch, overrides)
    return _sides(row, "stage1_256", flops, {})


def _stage1_flops(s: Settings, side: int, batch: int, overrides: tuple[str, ...]) -> float:
    cfg = compose_config("train_ae", [*case_stage1.OVERRIDES, *overrides])
    x = (torch.rand(batch, cfg.data.channels, side, side) * 2 - 1).to(s.device)
    ae, loss = instantiate(cfg.autoencoder).to(s.device).train(), instantiate(cfg.loss).to(s.device)
    step = case_stage1._training_step(ae, loss, lambda: ae.last_layer, list(ae.parameters()), x, s, cfg,
                                      configured=True)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def ddim(s: Settings) -> list[Measured]:
    """``case_ddim`` with the base UNet on 32×32×4 latents, N images; agreement checked."""
    latent = QUICK_LATENT if s.quick else LATENT
    overrides = ("backbone=base", f"data.resolution={latent * F_AE}", *(UNET_QUICK if s.quick else ()))
    sized = replace(s, repeats=min(s.repeats, 3), warmup=1)  # ~1 s per sampling run on an H100
    row = case_ddim.run(sized, overrides=overrides, num_images=DDIM_IMAGES)[0]
    cfg = compose_config("train_ldm", list(overrides))
    with torch.device("meta"):
        unet = instantiate(cfg.backbone).eval()
    steps = 2 if s.quick else 50
    flops = float(steps * 2 * row.batch * forward_flops_per_image(unet, latent))
    checked = {k: row.extra[k] for k in ("agreement", "max_abs_diff", "tolerance")}
    return _sides(row, "ddim50_cfg", flops, {"steps": steps, **checked})


def _sides(row: Row, case: str, flops: float, extra: dict) -> list[Measured]:
    return [Measured(case, "ours", row.batch, row.ours_s, row.ours_params, flops, row.ours_mem_mb, extra),
            Measured(case, "diffusers", row.batch, row.theirs_s, row.theirs_params, flops, row.theirs_mem_mb,
                     extra)]


def units(compile_backend: str) -> list[Unit]:
    """Every unit in running order (``late`` ones last)."""
    out = []
    for case in STAGE2:
        out += [Unit(case, "ours eager", partial(_stage2_unit, case, "ours eager", None)),
                Unit(case, "diffusers", partial(_stage2_unit, case, "diffusers", None))]
    out += [Unit("stage1_256", "ours + diffusers", stage1), Unit("ddim50_cfg", "ours + diffusers", ddim)]
    out += [Unit(case, f"ours compile ({compile_backend})",
                 partial(_stage2_unit, case, f"ours compile ({compile_backend})", compile_backend), late=True)
            for case in STAGE2]
    return out


def _stage2_unit(case: str, side: str, compile_backend: str | None, s: Settings) -> list[Measured]:
    step = theirs_stage2(case, s) if side == "diffusers" else ours_stage2(case, compile_backend, s)
    started = time.perf_counter()
    step.fn()  # the first call: compiles where compiled
    _sync(s.device)
    first_s = time.perf_counter() - started
    for _ in range(s.warmup - 1):
        step.fn()
    seconds = interleaved({"step": step.fn}, s.repeats, 0, s.device)["step"]
    resident = torch.cuda.memory_allocated() / 2**20 if s.device == "cuda" else None
    extra = {"first_call_s": round(first_s, 2), "resident_mb": resident and round(resident)}
    return [Measured(case, side, _stage2_config(case, s)[1], seconds, step.params, step.flops,
                     peak_memory_mb(step.fn, s.device), extra)]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
