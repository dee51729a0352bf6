"""Export a trained model to diffusers format: ``make export ARGS="ckpt=... out=exported/fmnist"``.

A stage-2 (train_ldm) checkpoint gives ``out/unet`` (``UNet2DConditionModel``, EMA weights by
default), ``out/scheduler`` (``DDIMScheduler`` with the trained noise schedule), ``out/conditioner``
(the conditioner's weights + ``conditioner.json``: how to build ``encoder_hidden_states``) and
``out/vae`` (``AutoencoderKL`` with the fitted latent scale); a stage-1 (train_ae) checkpoint gives
``out/vae`` only. Every part is reloaded from disk and compared with ldmlab on fixed random inputs;
the max |diff| are printed and written to ``out/export.json``. A mismatch is a bug (RuntimeError).

``out`` is checked before any work (not a link, a file or under one); everything is built in a
temporary folder beside it and swapped in only once every part has been checked, so a failed
export leaves ``out`` as it was. ``export.json`` lists every file written (with its sha256);
``overwrite=true`` replaces an earlier export only when ``out`` holds nothing else — a file of
yours there, or an edited one, refuses, and is never deleted.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import diffusers
import hydra
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file

from ldmlab.autoencoder.loading import load_autoencoder
from ldmlab.autoencoder.model import Autoencoder
from ldmlab.checkpoints import read_checkpoint
from ldmlab.commands.cli import CONF_DIR, exit_on_user_error, run
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.config.settings import ExportSettings
from ldmlab.diffusion.module import FIRST_STAGE_CONFIG, LatentDiffusionModule
from ldmlab.diffusion.restore import FIX, KEY, ldm_architecture, load_ldm, resolve_ldm_checkpoint
from ldmlab.first_stage.autoencoder import FirstStage
from ldmlab.first_stage.identity import IdentityFirstStage
from ldmlab.interop.autoencoder_kl import to_diffusers_vae
from ldmlab.interop.unet2d import assert_same_outputs, to_diffusers_unet
from ldmlab.utils.atomic_output import write_json
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.output_dir import atomic_dir, check_replaceable, checked_output_dir

BETA_SCHEDULES = {"LinearSchedule": "linear", "ScaledLinearSchedule": "scaled_linear",
                  "CosineSchedule": "squaredcos_cap_v2"}
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
MARKER = "export.json"


def export(cfg: DictConfig) -> Path:
    out = _checked_out(cfg.out, cfg.overwrite)
    path = resolve_ldm_checkpoint(cfg.ckpt, cfg.paths.log_dir)
    checkpoint = read_checkpoint(path, KEY, FIX)
    generator = torch.Generator().manual_seed(cfg.seed)
    with atomic_dir(out, MARKER, "out") as tmp:
        if FIRST_STAGE_CONFIG in checkpoint:
            parts, diffs, extra = _export_ldm(load_ldm(path), checkpoint, path, cfg, tmp, generator)
        else:
            autoencoder = load_autoencoder(path, KEY, FIX)[0].eval()
            scaling_factor = 1.0 if cfg.scaling_factor is None else float(cfg.scaling_factor)
            vae = to_diffusers_vae(autoencoder, scaling_factor)
            diffs = {"vae": _save_vae(autoencoder, vae, tmp / "vae", cfg.rtol, generator)}
            parts, extra = ["vae"], {"stage": 1, "scaling_factor": scaling_factor}
        write_json(tmp / MARKER, {
            "task": "export", "checkpoint": str(path), **extra, "parts": parts, "max_abs_diff": diffs,
            "rtol": cfg.rtol, "seed": cfg.seed, "diffusers_version": diffusers.__version__,
        })
    for name, diff in diffs.items():
        print(f"{name}: max |diff| = {diff:.3g}")
    print(f"wrote {', '.join(parts)} and {MARKER} to {out}")
    return out


def _export_ldm(module: LatentDiffusionModule, checkpoint: dict, path: Path, cfg: DictConfig, out: Path,
                generator: torch.Generator) -> tuple[list, dict, dict]:
    """Convert everything, then write into (the temporary) ``out`` and check; returns (the part
    folders, max |diff| per check, export.json extras)."""
    if module.horizon < module.schedule.num_timesteps:
        raise ConfigError("module.start", f"the model is trained on t < {module.horizon} only and samples "
                          "from another generator's output; diffusers pipelines start from noise",
                          "export a model trained on every timestep")
    model = module.ema.shadow if cfg.use_ema else module.model
    unet, conditioner, first_stage = model["unet"].eval(), model["conditioner"].eval(), module.first_stage
    if not isinstance(first_stage, FirstStage | IdentityFirstStage):
        raise ConfigError("first_stage", f"{type(first_stage).__name__} has no diffusers equivalent",
                          "export a model trained on a KL autoencoder (first_stage=autoencoder)")
    latent_size = module.resolution // first_stage.downsample_factor
    their_unet = to_diffusers_unet(unet, sample_size=latent_size)
    stored = ldm_architecture(checkpoint, path)["module"]["schedule"]
    scheduler, schedule_diff = _scheduler(module, stored)
    scaling_factor = float(first_stage.scale_factor) if isinstance(first_stage, FirstStage) else None
    vae = None if scaling_factor is None else to_diffusers_vae(first_stage.autoencoder, scaling_factor)

    their_unet.save_pretrained(out / "unet", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    x = torch.randn(2, unet.in_channels, latent_size, latent_size, generator=generator)
    t = torch.tensor([0, module.schedule.num_timesteps - 1])
    reloaded = UNet2DConditionModel.from_pretrained(out / "unet", low_cpu_mem_usage=False,
                                                    local_files_only=True, use_safetensors=True)
    cond = _random_cond(unet, latent_size, generator)
    diffs = {"unet": assert_same_outputs(unet, reloaded, x, t, cond, cfg.rtol),
             "scheduler alphas_cumprod": schedule_diff,
             "conditioner": _save_conditioner(conditioner, out / "conditioner")}
    parts = ["unet", "scheduler", "conditioner"]
    if vae is not None:
        diffs["vae"] = _save_vae(first_stage.autoencoder, vae, out / "vae", cfg.rtol, generator)
        parts.append("vae")
    return parts, diffs, {"stage": 2, "use_ema": cfg.use_ema, "scaling_factor": scaling_factor,
                          "latent_size": latent_size}


def _scheduler(module: LatentDiffusionModule, stored: dict) -> tuple[DDIMScheduler, float]:
    """A DDIMScheduler with the model's ᾱ table (checked), prediction type and DDIM spacing; final
    step to ᾱ = 1 as ldmlab's samplers. Returns it and max |Δᾱ|."""
    schedule = module.schedule
    kind = type(schedule)
    if kind.__name__ not in BETA_SCHEDULES:
        raise ConfigError("diffusion/schedule", f"{kind.__name__} has no diffusers beta_schedule",
                          "train with diffusion/schedule=scaled_linear (or linear, cosine)")
    args = {name: p.default for name, p in inspect.signature(kind).parameters.items()
            if p.default is not inspect.Parameter.empty} | {k: v for k, v in stored.items() if k[0] != "_"}
    scheduler = DDIMScheduler(
        num_train_timesteps=schedule.num_timesteps, beta_schedule=BETA_SCHEDULES[kind.__name__],
        beta_start=args.get("beta_start", 1e-4), beta_end=args.get("beta_end", 0.02),
        prediction_type=PREDICTION_TYPES[module.parameterization.name], clip_sample=False,
        set_alpha_to_one=True, steps_offset=0, rescale_betas_zero_snr=schedule.zero_terminal_snr,
        timestep_spacing=getattr(module.sampler, "spacing", "trailing"))
    ours = schedule.alphas_cumprod.detach().cpu().double()
    theirs = scheduler.alphas_cumprod.double()
    if not torch.allclose(theirs, ours, rtol=1e-3, atol=1e-6):
        raise ConfigError("diffusion.schedule", f"{kind.__name__}({args}) differs from diffusers' "
                          f"'{BETA_SCHEDULES[kind.__name__]}' (e.g. a cosine s or max_beta other than "
                          "0.008 / 0.999)", "train with the schedule's default parameters")
    return scheduler, float((theirs - ours).abs().max())


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
def _save_conditioner(conditioner: Conditioner, folder: Path) -> float:
    """Weights (safetensors) + ``conditioner.json``; class-embedding lookups are re-done from the
    reloaded file and compared with the embedders (max |diff|; 0 without class embedders)."""
    folder.mkdir()
    save_file({k: v.detach().clone().contiguous() for k, v in conditioner.state_dict().items()},
              str(folder / "model.safetensors"))
    embedders = []
    for name, embedder in conditioner.embedders.items():
        spec = {"name": name, "class": f"{type(embedder).__module__}.{type(embedder).__name__}",
                "output_type": embedder.output_type, "input_key": embedder.input_key}
        if isinstance(embedder, ClassEmbedder):
            spec |= {"table": f"embedders.{name}.table.weight", "num_classes": embedder.num_classes,
                     "null_index": embedder.num_classes, "recipe": "table[labels] (B, D); crossattn: "
                     "[:, None, :] (B, 1, D); unconditional (CFG): labels = null_index"}
        embedders.append(spec)
    write_json(folder / "conditioner.json", {
        "embedders": embedders,
        "merge": "crossattn outputs, concatenated along L in this order: encoder_hidden_states (B, L, D) "
                 "(with encoder_attention_mask when an embedder masks); vector outputs concatenated along D: "
                 "class_labels; concat outputs concatenated along C: appended to the sample's channels",
    })
    weights, diff = load_file(str(folder / "model.safetensors")), 0.0
    for spec in embedders:
        if "table" in spec:
            embedder, labels = conditioner.embedders[spec["name"]], torch.arange(spec["num_classes"])
            table = weights[spec["table"]]
            lookup = table[labels][:, None] if spec["output_type"] == "crossattn" else table[labels]
            null = table[spec["null_index"]].expand_as(embedder.null(1)[0])
            diff = max(diff, float((lookup - embedder(labels)).abs().max()),
                       float((null - embedder.null(1)[0]).abs().max()))
    return diff


@torch.no_grad()
def _save_vae(autoencoder: Autoencoder, vae: AutoencoderKL, folder: Path, rtol: float,
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


def _checked_out(out: str | None, overwrite: bool) -> Path:
    """The output folder: missing or empty, or (``overwrite=true``) an earlier export holding only
    the files its ``export.json`` lists."""
    if not out:
        raise ConfigError("out", "is not set", "out=exported/ldm")
    folder = checked_output_dir(out, "out")
    if folder.is_dir() and any(folder.iterdir()):
        check_replaceable(folder, MARKER, "out")
        if not overwrite:
            raise ConfigError("out", f"{folder} holds an earlier export", "overwrite=true")
    return folder


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(export, cfg, ExportSettings)


if __name__ == "__main__":
    run(main, "export")
