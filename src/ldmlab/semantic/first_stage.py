"""``first_stage=semantic``: the semantic latent space of a trained DiffAE-style model as a first
stage, so the same engine trains DiffAE's "latent DDIM" over z_sem (with ``unet=mlp``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ldmlab.checkpoints import read_checkpoint
from ldmlab.config.types import PositiveInt
from ldmlab.diffusion.restore import build_ldm, ldm_architecture
from ldmlab.first_stage.autoencoder import scale_fit_images, weights_fingerprint
from ldmlab.sampling.generate import generate_images
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import ConfigError

KEY = "first_stage.ckpt"
FIX = ("point it at a DiffAE checkpoint (a run of experiment=diffae), e.g. "
       "first_stage.ckpt=logs/train_ldm/latest/checkpoints/last.ckpt")


class SemanticFirstStage(nn.Module):
    """``encode``: images (B, C, H, W) → normalised z_sem (B, D, 1, 1), (Enc(x) − mean) / std per
    dimension (DiffAE's normalisation, fitted once on training data like ``scale_by_std``);
    ``decode``: z → images (B, C, H, W) in [-1, 1] by the semantic model's own DDIM
    (``decode_steps``, η = 0) from x_T ~ N(0, I), drawn from a generator seeded by the bytes of z
    (so a seeded latent sample decodes reproducibly, without touching the global RNG).

    The semantic model (its EMA weights: encoder, denoiser, schedule, first stage) is read from
    ``ckpt`` with the safe loader; its architecture is kept in ``autoencoder_config`` so that a
    latent-DDIM checkpoint, which holds these weights itself, restores without ``ckpt``.
    downsample_factor = resolution, so the stage-2 module's latent side is 1; ``expected_embed_dim``
    (``first_stage_embed_dim``, what the denoiser is built for) must equal z_sem's dimension.
    """

    def __init__(
        self,
        ckpt: str | None,
        resolution: PositiveInt,
        expected_embed_dim: PositiveInt,
        encoder: str = "z_sem",
        decode_steps: PositiveInt = 20,
        autoencoder_config: dict | None = None,
    ) -> None:
        super().__init__()
        if autoencoder_config is None:
            if not ckpt:
                raise ConfigError(KEY, "is not set", FIX)
            checkpoint = read_checkpoint(Path(ckpt), KEY, FIX)
            autoencoder_config = ldm_architecture(checkpoint, Path(ckpt))
            model = build_ldm(autoencoder_config, ckpt)
            try:
                model.load_state_dict(checkpoint["state_dict"])
            except (KeyError, RuntimeError) as err:
                raise ConfigError(KEY, f"{ckpt}: weights do not match its config ({str(err)[:200]})",
                                  FIX) from None
        else:
            model = build_ldm(autoencoder_config, ckpt or "a latent-DDIM checkpoint")
        embedders = model.ema.shadow["conditioner"].embedders
        if encoder not in embedders or not hasattr(embedders[encoder], "posterior"):
            raise ConfigError("first_stage.encoder", f"{ckpt} has no semantic encoder named {encoder!r} "
                              f"(its embedders: {sorted(embedders)})",
                              "first_stage.encoder=z_sem (a DiffAE trained with conditioner=semantic)")
        if model.resolution != resolution:
            raise ConfigError("data.resolution", f"is {resolution}, the semantic model works on "
                              f"{model.resolution}", f"data.resolution={model.resolution}")
        dim = embedders[encoder].embed_dim
        if dim != expected_embed_dim:
            raise ConfigError("first_stage_embed_dim", f"is {expected_embed_dim} but the semantic model's "
                              f"z_sem has {dim} dimensions", f"first_stage_embed_dim={dim}")
        self.checkpoint_path, self.autoencoder_config = ckpt, autoencoder_config
        self.encoder_name, self.resolution, self.decode_steps = encoder, resolution, decode_steps
        self.semantic = model.eval().requires_grad_(False)
        self.semantic.model = None  # sampling and encoding use the EMA copy only
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("scale_factor", torch.tensor(1.0))
        self.register_buffer("scale_initialized", torch.tensor(False))

    @property
    def encoder(self) -> nn.Module:
        return self.semantic.ema.shadow["conditioner"].embedders[self.encoder_name]

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def downsample_factor(self) -> int:
        return self.resolution

    @property
    def in_channels(self) -> int:
        return self.semantic.first_stage.in_channels

    def train(self, mode: bool = True) -> SemanticFirstStage:
        """Frozen: the semantic model stays in eval mode (posterior mean)."""
        super().train(mode)
        self.semantic.eval()
        return self

    @torch.no_grad()
    def semantic_code(self, images: torch.Tensor) -> torch.Tensor:
        """z_sem (B, D), unnormalised: the encoder's posterior mean of the images."""
        return self.encoder.posterior(images)[0]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → (B, D, 1, 1) normalised z_sem."""
        return ((self.semantic_code(images) - self.mean) / self.std)[:, :, None, None]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, D, 1, 1) normalised z_sem → images (B, C, H, W) in [-1, 1]: the semantic model's DDIM."""
        z = latents.flatten(1) * self.std + self.mean
        digest = hashlib.sha256(z.detach().float().cpu().numpy().tobytes()).digest()
        generator = torch.Generator(device=z.device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        model = self.semantic
        side = model.resolution // model.first_stage.downsample_factor
        return generate_images(
            model.first_stage, unet=model.ema.shadow["unet"], conditioner=model.ema.shadow["conditioner"],
            schedule=model.schedule, parameterization=model.parameterization,
            sampler=DDIMSampler(self.decode_steps), condition={self.encoder.input_key: z},
            latent_shape=(model.first_stage.embed_dim, side, side), num_samples=len(z), generator=generator,
            horizon=model.horizon)

    def decode_differentiable(self, latents: torch.Tensor) -> torch.Tensor:
        raise ConfigError("guidance", "a latent DDIM decodes through a diffusion model, which image guidance "
                          "cannot differentiate", "guidance=none or guidance=cfg")

    def fingerprint(self) -> str:
        """``weights_fingerprint`` of the semantic model."""
        return weights_fingerprint(self.semantic)

    def fit_scale_from(self, loader: Iterable[dict], num_batches: int, device: torch.device) -> float:
        """Fit the per-dimension mean and std of z_sem on ``num_batches`` training batches (pooled over
        DDP ranks); returns the mean std."""
        z = self.semantic_code(scale_fit_images(loader, num_batches).to(device)).double()
        stats = torch.cat([z.sum(0), z.square().sum(0), z.new_tensor([len(z)])])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        dim = z.shape[1]
        count = stats[-1]
        mean = stats[:dim] / count
        std = (stats[dim:2 * dim] / count - mean.square()).clamp_min(1e-12).sqrt()
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std))
        self.scale_initialized.fill_(True)
        return float(std.mean())

