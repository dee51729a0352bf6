"""The frozen stage-1 autoencoder as stage 2 sees it: images ↔ scaled latents.

Loaded from a stage-1 Lightning checkpoint (``ldmlab.autoencoder.loading``). ``first_stage=identity``
(``identity_first_stage.py``) is the pixel-space (f = 1) stand-in with the same interface.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ldmlab.autoencoder.loading import load_autoencoder
from ldmlab.checkpoints import instantiate_stored
from ldmlab.config.types import PositiveInt
from ldmlab.runs.layout import last_checkpoint_of_run, latest_run
from ldmlab.utils.errors import ConfigError

KEY = "first_stage.ckpt"
FIX = "point it at a train_ae checkpoint (first_stage.ckpt=logs/train_ae/latest/checkpoints/last.ckpt)"


def resolve_first_stage_checkpoint(ckpt: str | None, log_dir: str) -> Path:
    """An explicit checkpoint path, or ``last`` of ``<log_dir>/train_ae/latest`` (its summary)."""
    if ckpt:
        path = Path(ckpt).expanduser()
        if not path.is_file():
            raise ConfigError(KEY, f"{path} does not exist", "give a stage-1 .ckpt or run `make train-ae`")
        return path
    latest = latest_run(Path(log_dir) / "train_ae", KEY)
    summary = latest / "summary.json"
    if not summary.is_file():
        raise ConfigError(
            KEY, f"no trained autoencoder found ({summary} is missing)",
            "run `make train-ae` first or set first_stage.ckpt=/path/to/last.ckpt",
        )
    return last_checkpoint_of_run(latest, KEY, FIX)


def scale_fit_images(loader: Iterable[dict], num_batches: int) -> torch.Tensor:
    """The images of the first ``num_batches`` batches of ``loader``, concatenated; fewer batches
    than that is a ``ConfigError`` naming ``module.scale_fit_batches``."""
    batches = [batch["image"] for batch in islice(loader, num_batches)]
    if len(batches) < num_batches:
        fix = f"module.scale_fit_batches={len(batches)}" if batches else "lower data.batch_size"
        raise ConfigError("module.scale_fit_batches", f"needs {num_batches} training batches, the data "
                          f"has {len(batches)}", fix)
    return torch.cat(batches)


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


class FirstStage(nn.Module):
    """Frozen autoencoder + latent scale: ``encode`` gives z = scale · E(x), ``decode`` D(z / scale).

    ``expected_*`` are what the stage-2 config was written for; a checkpoint that disagrees is
    rejected with the key to change. ``scale_by_std``: the scale is set once from real latents
    (1 / std, all-reduced over DDP ranks) before training and then saved as a buffer.
    ``autoencoder_config``: rebuild the architecture from this config instead of reading
    ``ckpt`` (used when restoring a stage-2 checkpoint, which holds the weights itself).
    """

    def __init__(
        self,
        ckpt: str | None,
        log_dir: str,
        expected_embed_dim: PositiveInt,
        expected_downsample_factor: PositiveInt,
        expected_channels: PositiveInt,
        scale_factor: float = 1.0,
        scale_by_std: bool = True,
        autoencoder_config: dict | None = None,
    ) -> None:
        super().__init__()
        if autoencoder_config is None:
            self.checkpoint_path = str(resolve_first_stage_checkpoint(ckpt, log_dir))
            autoencoder, autoencoder_config = load_autoencoder(Path(self.checkpoint_path), KEY, FIX)
        else:
            self.checkpoint_path = ckpt
            autoencoder = instantiate_stored(autoencoder_config, ckpt or "a stage-2 checkpoint", KEY)
        self.autoencoder_config = autoencoder_config
        for key, expected, actual in (
            ("first_stage_embed_dim", expected_embed_dim, autoencoder.embed_dim),
            ("first_stage_downsample_factor", expected_downsample_factor, autoencoder.downsample_factor),
            ("data.channels", expected_channels, autoencoder.in_channels),
        ):
            if expected != actual:
                raise ConfigError(
                    key, f"is {expected} but the checkpoint {self.checkpoint_path} has {actual}",
                    f"set {key}={actual} or use a matching first_stage.ckpt",
                )
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.scale_by_std = scale_by_std
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))
        self.register_buffer("scale_initialized", torch.tensor(not scale_by_std))

    @property
    def embed_dim(self) -> int:
        return self.autoencoder.embed_dim

    @property
    def downsample_factor(self) -> int:
        return self.autoencoder.downsample_factor

    @property
    def in_channels(self) -> int:
        """Channels of the images."""
        return self.autoencoder.in_channels

    def train(self, mode: bool = True) -> FirstStage:
        """The autoencoder stays in eval mode (KL: posterior mode; no dropout, no BN updates)."""
        super().train(mode)
        self.autoencoder.eval()
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → (B, embed_dim, H/f, W/f) scaled latents."""
        return self.autoencoder.encode(images)[0] * self.scale_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → images (B, C, H, W) clamped to [-1, 1]."""
        return self.decode_differentiable(latents).clamp(-1, 1)

    def decode_differentiable(self, latents: torch.Tensor) -> torch.Tensor:
        """D(latents / scale), unclamped, in the caller's grad mode: differentiable in ``latents``
        (the weights stay frozen) and nonzero gradients where pixels leave [-1, 1] (image guidance)."""
        return self.autoencoder.decode(latents / self.scale_factor)

    @torch.no_grad()
    def fingerprint(self) -> str:
        """16 hex digits of sha256 over the autoencoder's state_dict (names and raw bytes, sorted by
        name; independent of device): tells whether two first stages carry the same weights."""
        return weights_fingerprint(self.autoencoder)

    def fit_scale_from(self, loader: Iterable[dict], num_batches: int, device: torch.device) -> float:
        """``fit_scale`` on the images of the first ``num_batches`` batches of ``loader``; fewer
        batches than that is a ``ConfigError`` naming ``module.scale_fit_batches``."""
        return self.fit_scale(scale_fit_images(loader, num_batches).to(device))

    @torch.no_grad()
    def fit_scale(self, images: torch.Tensor) -> float:
        """Set scale = 1 / std of the (unscaled) latents of ``images`` pooled over all ranks."""
        z = self.autoencoder.encode(images)[0].double()
        count = torch.tensor(z.numel(), dtype=torch.double, device=z.device)
        stats = torch.stack([z.sum(), z.square().sum(), count])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        total, total_sq, count = stats.tolist()
        std = (total_sq / count - (total / count) ** 2) ** 0.5
        self.scale_factor.fill_(1.0 / std)
        self.scale_initialized.fill_(True)
        return 1.0 / std
