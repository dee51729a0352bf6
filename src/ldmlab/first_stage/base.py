"""What every frozen first stage is to stage 2: images ↔ scaled latents, a fitted scale, frozen weights.

A stage implements ``unscaled`` (images → its raw latents) and ``decode_unscaled`` (raw latents →
images, unclamped) and builds its own networks; ``FirstStageBase`` owns the rest: the
``scale_factor`` / ``scale_initialized`` buffers, scaling, the DDP-pooled fit of the scale, the
freeze, the clamp of ``decode`` and the checks of the shape a stage-2 config expects.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from itertools import islice

import torch
import torch.distributed as dist
from torch import nn

from ldmlab.utils.errors import FieldError


def scale_fit_images(loader: Iterable[dict], num_batches: int) -> torch.Tensor:
    """The images of the first ``num_batches`` batches of ``loader``, concatenated; fewer batches
    than that is a ``FieldError`` naming ``module.scale_fit_batches``."""
    batches = [batch["image"] for batch in islice(loader, num_batches)]
    if len(batches) < num_batches:
        fix = f"{{key}}={len(batches)}" if batches else "lower data.batch_size"
        raise FieldError("module", "scale_fit_batches", f"needs {num_batches} training batches, the data "
                         f"has {len(batches)}", fix)
    return torch.cat(batches)


def check_expected(checks: Iterable[tuple[str, str, int, int]], problem: str, fix: str) -> None:
    """Refuse a first stage whose shape is not what the stage-2 config was written for: ``checks``
    are (part, field, expected, actual); ``problem`` and ``fix`` may say ``{expected}``, ``{actual}``
    and ``{key}`` (the field's config key)."""
    for part, field, expected, actual in checks:
        if expected != actual:
            fill = {"{expected}": str(expected), "{actual}": str(actual)}
            raise FieldError(part, field, _filled(problem, fill), _filled(fix, fill))


def _filled(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(name, value)
    return text


def summed_over_ranks(stats: torch.Tensor) -> torch.Tensor:
    """``stats`` summed in place over the DDP ranks (unchanged without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stats)
    return stats


@torch.no_grad()
def weights_fingerprint(module: nn.Module) -> str:
    """16 hex digits of sha256 over ``module``'s state_dict (names and raw bytes, sorted by name;
    independent of device): tells whether two frozen networks carry the same weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:16]


class FirstStageBase(nn.Module, ABC):
    """A frozen first stage: ``encode`` images (B, C, H, W) in [-1, 1] → latents z = scale · raw,
    ``decode`` latents → images clamped to [-1, 1], ``decode_differentiable`` unclamped.

    Subclasses build their networks as attributes, then call ``freeze``: the networks stay in eval
    mode without gradients (also after ``.train()``), and the buffers ``scale_factor`` and
    ``scale_initialized`` are added. ``fit_scale`` sets scale = 1 / std of the raw latents, pooled
    over DDP ranks (``scale_by_std``); a subclass may normalise otherwise (``fit_normalisation``,
    ``scaled``, ``unscale``). ``check_shape`` refuses a stage that is not what the config expects.
    ``checkpoint_path``: where it was read from; ``autoencoder_config``: its architecture as plain
    data, stored in stage-2 checkpoints (``ldmlab.checkpoints.FIRST_STAGE_CONFIG``).
    """

    checkpoint_path: str | None
    autoencoder_config: dict | None

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Channels of the latents."""

    @property
    @abstractmethod
    def downsample_factor(self) -> int:
        """f: latents are (H/f, W/f)."""

    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Channels of the images."""

    @abstractmethod
    def unscaled(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) → the stage's raw latents (before ``scaled``)."""

    @abstractmethod
    def decode_unscaled(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latents → images (B, C, H, W), unclamped, in the caller's grad mode."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Tells whether two first stages carry the same weights."""

    def check_shape(self, embed_dim: int, downsample_factor: int, channels: int, problem: str,
                    fix: str) -> None:
        """``check_expected`` of the config's ``first_stage_embed_dim``, ``first_stage_downsample_factor``
        and ``data.channels`` against this stage's ``embed_dim``, ``downsample_factor``, ``in_channels``."""
        check_expected([
            ("latent_shape", "first_stage_embed_dim", embed_dim, self.embed_dim),
            ("latent_shape", "first_stage_downsample_factor", downsample_factor, self.downsample_factor),
            ("data", "channels", channels, self.in_channels),
        ], problem, fix)

    def freeze(self, scale_factor: float, fitted: bool) -> None:
        """Freeze every network set so far and add the scale buffers (``fitted`` False: ``fit_scale``
        must set the scale before use)."""
        self.requires_grad_(False)
        self.train(self.training)
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))
        self.register_buffer("scale_initialized", torch.tensor(fitted))

    def train(self, mode: bool = True) -> FirstStageBase:
        """The networks stay in eval mode (posterior mode, no dropout, no BN updates)."""
        super().train(mode)
        for network in self.children():
            network.eval()
        return self

    def scaled(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latents → latents: raw · scale."""
        return raw * self.scale_factor

    def unscale(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → raw latents: latents / scale."""
        return latents / self.scale_factor

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → scaled latents."""
        return self.scaled(self.unscaled(images))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → images (B, C, H, W) clamped to [-1, 1]."""
        return self.decode_unscaled(self.unscale(latents)).clamp(-1, 1)

    def decode_differentiable(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → images, unclamped, in the caller's grad mode: differentiable in ``latents``
        (the weights stay frozen), with nonzero gradients where pixels leave [-1, 1] (image guidance)."""
        return self.decode_unscaled(self.unscale(latents))

    def fit_scale_from(self, loader: Iterable[dict], num_batches: int, device: torch.device) -> float:
        """``fit_scale`` on the images of the first ``num_batches`` batches of ``loader``; fewer
        batches than that is a ``FieldError`` naming ``module.scale_fit_batches``."""
        return self.fit_scale(scale_fit_images(loader, num_batches).to(device))

    @torch.no_grad()
    def fit_scale(self, images: torch.Tensor) -> float:
        """Fit the normalisation to the raw latents of ``images`` pooled over all ranks; returns the scale."""
        scale = self.fit_normalisation(self.unscaled(images).double())
        self.scale_initialized.fill_(True)
        return scale

    def fit_normalisation(self, raw: torch.Tensor) -> float:
        """scale = 1 / std of every element of ``raw`` (float64) on all ranks."""
        count = torch.tensor(raw.numel(), dtype=torch.double, device=raw.device)
        stats = summed_over_ranks(torch.stack([raw.sum(), raw.square().sum(), count]))
        total, total_sq, count = stats.tolist()
        std = (total_sq / count - (total / count) ** 2) ** 0.5
        self.scale_factor.fill_(1.0 / std)
        return 1.0 / std
