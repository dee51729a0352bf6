"""``first_stage=semantic``: the semantic latent space of a trained DiffAE-style model as a first
stage, so the same engine trains DiffAE's "latent DDIM" over z_sem (with ``backbone=mlp``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ldmlab.checkpoints import read_checkpoint
from ldmlab.config.types import PositiveInt
from ldmlab.first_stage.base import FirstStageBase, check_expected, summed_over_ranks, weights_fingerprint
from ldmlab.models.restore import build_ldm, ldm_architecture
from ldmlab.sampling.generate import generate_images
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import ConfigError, FieldError, part_key

FIX = ("point it at a DiffAE checkpoint (a run of experiment=diffae), e.g. "
       "{key}=logs/train_ldm/latest/checkpoints/last.ckpt")


class SemanticFirstStage(FirstStageBase):
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
                raise FieldError("first_stage", "ckpt", "is not set", FIX)
            key = part_key("first_stage", "ckpt")
            checkpoint = read_checkpoint(Path(ckpt), key, FIX.replace("{key}", key))
            autoencoder_config = ldm_architecture(checkpoint, Path(ckpt))
            model = build_ldm(autoencoder_config, ckpt)
            try:
                model.load_state_dict(checkpoint["state_dict"])
            except (KeyError, RuntimeError) as err:
                raise FieldError("first_stage", "ckpt", f"{ckpt}: weights do not match its config "
                                 f"({str(err)[:200]})", FIX) from None
        else:
            model = build_ldm(autoencoder_config, ckpt or "a latent-DDIM checkpoint")
        embedders = model.ema.shadow["conditioner"].embedders
        if encoder not in embedders or not hasattr(embedders[encoder], "posterior"):
            raise FieldError("first_stage", "encoder", f"{ckpt} has no semantic encoder named {encoder!r} "
                             f"(its embedders: {sorted(embedders)})",
                             "{key}=z_sem (a DiffAE trained with conditioner=semantic)")
        dim = embedders[encoder].embed_dim
        check_expected([("data", "resolution", resolution, model.resolution)], "is {expected}, the semantic "
                       "model works on {actual}", "{key}={actual}")
        check_expected([("latent_shape", "first_stage_embed_dim", expected_embed_dim, dim)], "is {expected} "
                       "but the semantic model's z_sem has {actual} dimensions", "{key}={actual}")
        self.checkpoint_path, self.autoencoder_config = ckpt, autoencoder_config
        self.encoder_name, self.resolution, self.decode_steps = encoder, resolution, decode_steps
        self.semantic = model
        self.semantic.model = None  # sampling and encoding use the EMA copy only
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.freeze(1.0, fitted=False)  # the scale stays 1: mean and std normalise

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

    @torch.no_grad()
    def unscaled(self, images: torch.Tensor) -> torch.Tensor:
        """z_sem (B, D), unnormalised: the encoder's posterior mean of the images."""
        return self.encoder.posterior(images)[0]

    def scaled(self, raw: torch.Tensor) -> torch.Tensor:
        """z_sem (B, D) → (B, D, 1, 1) normalised, (z_sem − mean) / std."""
        return ((raw - self.mean) / self.std)[:, :, None, None]

    def unscale(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, D, 1, 1) normalised → z_sem (B, D)."""
        return latents.flatten(1) * self.std + self.mean

    @torch.no_grad()
    def decode_unscaled(self, z: torch.Tensor) -> torch.Tensor:
        """z_sem (B, D) → images (B, C, H, W) in [-1, 1]: the semantic model's DDIM."""
        digest = hashlib.sha256(z.detach().float().cpu().numpy().tobytes()).digest()
        generator = torch.Generator(device=z.device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        model = self.semantic
        side = model.resolution // model.first_stage.downsample_factor
        shadow = model.ema.shadow
        return generate_images(
            model.first_stage, backbone=shadow["backbone"], conditioner=shadow["conditioner"],
            schedule=model.schedule, parameterization=model.parameterization,
            sampler=DDIMSampler(self.decode_steps), condition={self.encoder.input_key: z},
            latent_shape=(model.first_stage.embed_dim, side, side), num_samples=len(z), generator=generator,
            horizon=model.horizon)

    def decode_differentiable(self, latents: torch.Tensor) -> torch.Tensor:
        raise ConfigError(part_key("guidance"), "a latent DDIM decodes through a diffusion model, which "
                          "image guidance cannot differentiate", "guidance=none or guidance=cfg")

    def fingerprint(self) -> str:
        """``weights_fingerprint`` of the semantic model."""
        return weights_fingerprint(self.semantic)

    def fit_normalisation(self, raw: torch.Tensor) -> float:
        """Fit the per-dimension mean and std of z_sem (B, D) float64, pooled over DDP ranks; returns
        the mean std."""
        stats = summed_over_ranks(torch.cat([raw.sum(0), raw.square().sum(0), raw.new_tensor([len(raw)])]))
        dim = raw.shape[1]
        count = stats[-1]
        mean = stats[:dim] / count
        std = (stats[dim:2 * dim] / count - mean.square()).clamp_min(1e-12).sqrt()
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std))
        return float(std.mean())
