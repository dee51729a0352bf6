"""A trained ldmlab model written as diffusers part folders, each reloaded and checked.

Stage 2: the denoiser — a ``UNet`` as ``unet`` (``UNet2DConditionModel``), a ``DiT`` as
``transformer`` (``DiTTransformer2DModel``, carrying the conditioner's class table) —,
``scheduler`` (``DDIMScheduler``; ``FlowMatchEulerDiscreteScheduler`` for flow matching,
``EDMEulerScheduler`` for EDM: ``interop.scheduler``), ``conditioner`` (weights +
``conditioner.json``) and, on a KL first stage, ``vae`` (``AutoencoderKL`` with the fitted latent
scale); stage 1: ``vae`` only. What diffusers has no twin for (a U-ViT, a DiT with cross-attention,
an objective without a scheduler twin, ...) is a ``ConfigError`` naming the key, raised before
anything is written. Every part is reloaded from disk and compared with ldmlab on fixed random
inputs; a mismatch is a bug (RuntimeError).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DiTTransformer2DModel, ModelMixin, UNet2DConditionModel

from ldmlab.autoencoder.model import Autoencoder
from ldmlab.backbones.base import Denoiser
from ldmlab.backbones.dit import DiT
from ldmlab.backbones.unet import UNet
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.process import NoiseProcess
from ldmlab.first_stage.autoencoder import FirstStage
from ldmlab.first_stage.identity import IdentityFirstStage
from ldmlab.interop.autoencoder_kl import to_diffusers_vae
from ldmlab.interop.conditioner import save_conditioner
from ldmlab.interop.dit import assert_same_dit_outputs, label_table, to_diffusers_dit
from ldmlab.interop.scheduler import to_diffusers_scheduler
from ldmlab.interop.unet2d import assert_same_outputs, to_diffusers_unet
from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.utils.errors import ConfigError, FieldError, part_key

Export = tuple[list, dict, dict]  # (the part folders, max |diff| per check, export.json extras)


def export_ldm(module: LatentDiffusionModule, stored_schedule: dict, out: Path, use_ema: bool, rtol: float,
               generator: torch.Generator) -> Export:
    """Convert everything, then write the stage-2 parts into ``out`` and check them.
    ``stored_schedule``: the schedule's config node as the checkpoint keeps it."""
    if module.horizon is not None and module.horizon < module.schedule.num_timesteps:
        raise FieldError("module", "start", f"the model is trained on t < {module.horizon} only and samples "
                         "from another generator's output; diffusers pipelines start from noise",
                         "export a model trained on every timestep")
    scheduler, diffs = to_diffusers_scheduler(module, stored_schedule)
    model = module.ema.shadow if use_ema else module.model
    backbone, conditioner = model["backbone"].eval(), model["conditioner"].eval()
    first_stage = module.first_stage
    if not isinstance(first_stage, FirstStage | IdentityFirstStage):
        key = part_key("first_stage")
        raise ConfigError(key, f"{type(first_stage).__name__} has no diffusers equivalent",
                          f"export a model trained on a KL autoencoder ({key}=autoencoder)")
    latent_size = module.resolution // first_stage.downsample_factor
    name, theirs = diffusers_denoiser(backbone, conditioner, latent_size)
    scaling_factor = float(first_stage.scale_factor) if isinstance(first_stage, FirstStage) else None
    vae = None if scaling_factor is None else to_diffusers_vae(first_stage.autoencoder, scaling_factor)

    theirs.save_pretrained(out / name, safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    times = check_times(module.schedule, generator)
    if name == "transformer":
        diffs[name] = _check_dit(backbone, label_table(conditioner), out / name, times, rtol, generator)
    else:
        diffs[name] = _check_unet(backbone, out / name, latent_size, times[[0, -1]], rtol, generator)
    diffs["conditioner"] = save_conditioner(conditioner, out / "conditioner")
    parts = [name, "scheduler", "conditioner"]
    if vae is not None:
        diffs["vae"] = save_vae(first_stage.autoencoder, vae, out / "vae", rtol, generator)
        parts.append("vae")
    return parts, diffs, {"stage": 2, "use_ema": use_ema, "scaling_factor": scaling_factor,
                          "latent_size": latent_size}


def diffusers_denoiser(
    backbone: Denoiser, conditioner: Conditioner, latent_size: int
) -> tuple[str, ModelMixin]:
    """(part folder name, diffusers twin of ``backbone``); a ``ConfigError`` naming the key when
    diffusers cannot express it."""
    if isinstance(backbone, DiT):
        return "transformer", to_diffusers_dit(backbone, label_table(conditioner))
    if isinstance(backbone, UNet):
        return "unet", to_diffusers_unet(backbone, sample_size=latent_size)
    key = part_key("backbone")
    raise ConfigError(key, f"{type(backbone).__name__} has no diffusers equivalent",
                      f"export a model trained with {key}=dit or {key}=small")


def check_times(schedule: NoiseProcess, generator: torch.Generator) -> torch.Tensor:
    """The backbone's time inputs (3,) at the cleanest, a random and the noisiest trained level
    (t = 0, random, T − 1 on a discrete schedule)."""
    if schedule.continuous:
        units = torch.cat([torch.zeros(1), torch.rand(1, generator=generator), torch.ones(1)])
        levels = schedule.from_unit(units)
    else:
        levels = torch.tensor([0, int(torch.randint(schedule.num_timesteps, (), generator=generator)),
                               schedule.num_timesteps - 1])
    return schedule.network_time(levels)


def _check_unet(unet: UNet, folder: Path, side: int, t: torch.Tensor, rtol: float,
                generator: torch.Generator) -> float:
    """Reload ``folder`` and compare with ``unet`` on random (2, C, side, side) latents at times t (2,)."""
    x = torch.randn(2, unet.in_channels, side, side, generator=generator)
    reloaded = UNet2DConditionModel.from_pretrained(folder, low_cpu_mem_usage=False, local_files_only=True,
                                                    use_safetensors=True)
    return assert_same_outputs(unet, reloaded, x, t, _random_cond(unet, side, generator), rtol)


def _check_dit(dit: DiT, labels: ClassEmbedder, folder: Path, t: torch.Tensor, rtol: float,
               generator: torch.Generator) -> float:
    """Reload ``folder`` and compare with ``dit`` on random latents at time inputs t (3,) with
    labels random, random and the null row."""
    side = dit.input_size
    x = torch.randn(3, dit.in_channels, side, side, generator=generator)
    classes = torch.cat([torch.randint(labels.num_classes, (2,), generator=generator),
                         torch.tensor([labels.num_classes])])
    reloaded = DiTTransformer2DModel.from_pretrained(folder, low_cpu_mem_usage=False, local_files_only=True,
                                                     use_safetensors=True)
    return assert_same_dit_outputs(dit, labels, reloaded.eval(), x, t, classes, rtol)


def export_vae(autoencoder: Autoencoder, scaling_factor: float, out: Path, rtol: float,
               generator: torch.Generator) -> Export:
    """Write a stage-1 autoencoder as ``out/vae`` and check it."""
    vae = to_diffusers_vae(autoencoder, scaling_factor)
    diffs = {"vae": save_vae(autoencoder, vae, out / "vae", rtol, generator)}
    return ["vae"], diffs, {"stage": 1, "scaling_factor": scaling_factor}


def _random_cond(unet, side: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random conditions of the shapes ``unet`` takes (batch 2, a 2-token masked context, side × side)."""
    cond = {}
    if unet.context_dim:
        cond["crossattn"] = torch.randn(2, 2, unet.context_dim, generator=generator)
        cond["crossattn_mask"] = torch.tensor([[True, True], [True, False]])
    if unet.vector_dim:
        cond["vector"] = torch.randn(2, unet.vector_dim, generator=generator)
    if unet.concat_channels:
        cond["concat"] = torch.randn(2, unet.concat_channels, side, side, generator=generator)
    return cond


@torch.no_grad()
def save_vae(autoencoder: Autoencoder, vae: AutoencoderKL, folder: Path, rtol: float,
             generator: torch.Generator) -> float:
    """Save, reload, compare posterior means and decodings on a random (1, C, 4f, 4f) image."""
    vae.save_pretrained(folder, safe_serialization=True)
    reloaded = AutoencoderKL.from_pretrained(folder, low_cpu_mem_usage=False, local_files_only=True,
                                             use_safetensors=True).eval()
    side = 4 * autoencoder.downsample_factor
    x = torch.rand(1, autoencoder.in_channels, side, side, generator=generator) * 2 - 1
    mean = autoencoder.eval().encode(x)[0]
    pairs = ((mean, reloaded.encode(x).latent_dist.mean),
             (autoencoder.decode(mean), reloaded.decode(mean).sample))
    diff = max(float((ours - theirs).abs().max()) for ours, theirs in pairs)
    scale = min(float(ours.abs().max()) for ours, _ in pairs)
    if not diff <= rtol * scale:
        raise RuntimeError(f"diffusers VAE differs from ldmlab's: max |diff| = {diff:.3g} > {rtol:g} × "
                           f"max |output| = {rtol * scale:.3g}")
    return diff
