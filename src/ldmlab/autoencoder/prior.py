"""A trained VAE as *another generator* for the hybrids that refine its samples (DiffuseVAE,
ES-DDPM): frozen, with a prior to sample from."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ldmlab.autoencoder.loading import load_autoencoder
from ldmlab.config.types import PositiveInt
from ldmlab.runs.layout import checkpoint_file
from ldmlab.utils.errors import ConfigError, FieldError, part_key
from ldmlab.utils.noise import Generator

KEY = "generator_ckpt"
FIX = "give a KL train_ae run or checkpoint, e.g. generator_ckpt=logs/train_vae/latest"


class VAEPrior(nn.Module):
    """``sample(n)`` = D(z), z ~ p(z) (the regulariser's prior); ``reconstruct(x)`` = D(E(x)) with the
    posterior mode. Both (N, C, resolution, resolution) in [-1, 1], without gradients.

    ckpt: a stage-1 checkpoint whose regulariser has a prior (KL; a real VAE needs a real KL
    weight, e.g. ``loss.reg_weight=1``, for its prior samples to look like data), or a stage-1
    run dir: the checkpoint its summary selects, as for ``first_stage.ckpt``
    (``ldmlab.runs.selection``). It is read again when a stage-2 checkpoint holding this
    generator is restored. resolution / channels: what the diffusion model works on (checked
    against the autoencoder now).
    """

    def __init__(self, ckpt: str, resolution: PositiveInt, channels: PositiveInt) -> None:
        super().__init__()
        path = checkpoint_file(Path(str(ckpt)).expanduser(), KEY, FIX)
        autoencoder, _ = load_autoencoder(path, KEY, FIX)
        if autoencoder.in_channels != channels:
            channels_key = part_key("data", "channels")
            raise ConfigError(KEY, f"{path} generates {autoencoder.in_channels}-channel images, the data has "
                              f"{channels}", f"use a VAE trained on this data ({channels_key}={channels})")
        f = autoencoder.downsample_factor
        if resolution % f:
            raise FieldError("data", "resolution", f"{resolution} is not divisible by the generator's f={f}",
                             f"use a multiple of {f}, e.g. {{key}}={max(f, resolution // f * f)}")
        if autoencoder.regularizer.sample_prior((1, autoencoder.embed_dim, 1, 1)) is None:
            raise ConfigError(KEY, f"{path} has a {type(autoencoder.regularizer).__name__}, which has no "
                              "prior to sample", FIX)
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.resolution = resolution

    def train(self, mode: bool = True) -> VAEPrior:
        """Frozen: the autoencoder stays in eval mode (posterior mode, no dropout)."""
        super().train(mode)
        self.autoencoder.eval()
        return self

    @torch.no_grad()
    def sample(self, n: int, generator: Generator | None = None) -> torch.Tensor:
        """(n, C, resolution, resolution) prior samples; ``generator`` (one, or one per sample:
        ``ldmlab.utils.noise``) on the weights' device."""
        return self.autoencoder.sample(n, self.resolution, generator)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → D(E(x)) clamped to [-1, 1]."""
        return self.autoencoder(images.to(self.autoencoder.post_quant_conv.weight))[0].clamp(-1, 1)
