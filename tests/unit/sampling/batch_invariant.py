"""Tiny pixel LDMs whose networks are batch-invariant bit for bit (elementwise, no matmul), so
any difference between batchings of a draw can only come from the noise: a class-conditional one
and an ES-DDPM one starting from a (random) KL VAE's prior."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ldmlab.backbones.base import Denoiser
from ldmlab.checkpoints import CONFIG_KEY
from ldmlab.models.ldm import LatentDiffusionModule
from tests.conftest import compose_config

TINY_PIXEL = ["first_stage=identity", "backbone=dit", "conditioner=class_vector", "backbone.hidden_size=32",
              "backbone.depth=2", "backbone.num_heads=2"]


class Pointwise(Denoiser):
    """out = 0.9·x − 0.05·x³ + 10⁻⁴·t + 0.1·v₀ (v₀: the first entry of the condition vector, 0
    without one): only elementwise products and sums, which give every row the same bits at any
    batch size (a matmul does not: BLAS picks its kernel by the batch's shape)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, None, None, 0)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        shift = cond["vector"][:, :1, None, None] if cond and "vector" in cond else 0.0
        return 0.9 * x - 0.05 * x * x * x + 1e-4 * t.to(x.dtype).view(-1, 1, 1, 1) + 0.1 * shift


def pointwise_ldm(*overrides: str, resolution: int = 8) -> LatentDiffusionModule:
    """A class-conditional (class_vector) 1-channel pixel model of ``resolution``² with a
    ``Pointwise`` EMA denoiser, in eval mode; its other weights (the label table) drawn from seed 0."""
    cfg = compose_config("train_ldm", [*TINY_PIXEL, f"data.resolution={resolution}", *overrides])
    torch.manual_seed(0)
    module = instantiate(cfg.module).eval()
    module.ema.shadow["backbone"] = Pointwise(module.first_stage.embed_dim)
    return module


def vae_ckpt(path: Path) -> Path:
    """A stage-1 checkpoint of a random 8-px KL autoencoder (f = 4), enough for ``VAEPrior``."""
    config = compose_config("train_ae", ["autoencoder.encoder.ch=8", "data.resolution=8"]).autoencoder
    torch.manual_seed(0)
    autoencoder = instantiate(config)
    torch.save({CONFIG_KEY: {"autoencoder": OmegaConf.to_container(config, resolve=True)},
                "state_dict": {f"autoencoder.{k}": v for k, v in autoencoder.state_dict().items()}}, path)
    return path


class Nearest(nn.Module):
    """A batch-invariant stand-in decoder: channel 0 of z (B, C, h, w) repeated to (B, 1, f·h, f·w)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :1].repeat_interleave(self.factor, -1).repeat_interleave(self.factor, -2)


def es_ddpm_ldm(ckpt: Path) -> LatentDiffusionModule:
    """An unconditional ES-DDPM pixel model (t < T' = 300) starting from the VAE prior of ``ckpt``
    (its z drawn by the real prior, decoded by ``Nearest``), with a ``Pointwise`` denoiser."""
    pixel = [arg for arg in TINY_PIXEL if not arg.startswith("conditioner=")]  # es_ddpm: unconditional
    cfg = compose_config("train_ldm", ["experiment=es_ddpm", f"generator_ckpt={ckpt}", *pixel,
                                       "data.resolution=8", "diffusion.timestep_sampler.t_max=300"])
    module = instantiate(cfg.module).eval()
    module.ema.shadow["backbone"] = Pointwise(module.first_stage.embed_dim)
    vae = module.start.autoencoder
    with torch.no_grad():  # an identity 1×1 conv: exact in any kernel (every other term is 0·z)
        channels = vae.post_quant_conv.weight.shape[0]
        vae.post_quant_conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        vae.post_quant_conv.bias.zero_()
    vae.decoder = Nearest(vae.downsample_factor)
    return module
