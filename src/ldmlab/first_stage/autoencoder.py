"""The frozen stage-1 autoencoder as stage 2 sees it: images ↔ scaled latents.

Loaded from a stage-1 Lightning checkpoint (``ldmlab.autoencoder.loading``). ``first_stage=identity``
(``identity.py``) is the pixel-space (f = 1) stand-in; both are ``FirstStageBase`` (``base.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ldmlab.autoencoder.loading import load_autoencoder
from ldmlab.checkpoints import instantiate_stored
from ldmlab.config.types import PositiveInt
from ldmlab.first_stage.base import FirstStageBase, weights_fingerprint
from ldmlab.runs.layout import resolve_run_checkpoint
from ldmlab.utils.errors import part_key

FIX = "point it at a train_ae run or checkpoint ({key}=logs/train_ae/latest, or a .ckpt file)"
MISSING = "run `make train-ae` first or set {key}=<a train_ae run dir or .ckpt file>"


def resolve_first_stage_checkpoint(ckpt: str | None, log_dir: str) -> Path:
    """A checkpoint file, or a train_ae run dir's selected checkpoint (its best by the monitored
    reconstruction metric, ``ldmlab.runs.selection``); unset: that of ``<log_dir>/train_ae/latest``."""
    key = part_key("first_stage", "ckpt")
    return resolve_run_checkpoint(ckpt, log_dir, "train_ae", key, FIX.replace("{key}", key),
                                  "trained autoencoder found", MISSING.replace("{key}", key))


class FirstStage(FirstStageBase):
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
        key = part_key("first_stage", "ckpt")
        if autoencoder_config is None:
            self.checkpoint_path = str(resolve_first_stage_checkpoint(ckpt, log_dir))
            autoencoder, autoencoder_config = load_autoencoder(Path(self.checkpoint_path), key,
                                                               FIX.replace("{key}", key))
        else:
            self.checkpoint_path = ckpt
            autoencoder = instantiate_stored(autoencoder_config, ckpt or "a stage-2 checkpoint", key)
        self.autoencoder_config, self.autoencoder = autoencoder_config, autoencoder
        self.check_shape(expected_embed_dim, expected_downsample_factor, expected_channels,
                         f"is {{expected}} but the checkpoint {self.checkpoint_path} has {{actual}}",
                         f"set {{key}}={{actual}} or use a matching {key}")
        self.scale_by_std = scale_by_std
        self.freeze(scale_factor, fitted=not scale_by_std)

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

    def unscaled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → E(x) (B, embed_dim, H/f, W/f): the posterior mode (KL)."""
        return self.autoencoder.encode(images)[0]

    def decode_unscaled(self, raw: torch.Tensor) -> torch.Tensor:
        """D(raw), unclamped."""
        return self.autoencoder.decode(raw)

    @torch.no_grad()
    def fingerprint(self) -> str:
        """16 hex digits of sha256 over the autoencoder's state_dict (names and raw bytes, sorted by
        name; independent of device): tells whether two first stages carry the same weights."""
        return weights_fingerprint(self.autoencoder)
