"""``first_stage=identity``: diffusion directly on pixels (f = 1), behind FirstStage's interface."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ldmlab.first_stage.base import FirstStageBase


class IdentityFirstStage(FirstStageBase):
    """``encode``/``decode`` are the identity on images (B, C, H, W) in [-1, 1] (``decode`` clamps),
    with scale 1: the pixel-space baseline of the LDM paper (f = 1), so every stage-2 feature
    (conditioning, CFG, samplers, sweeps, metrics) runs on pixels unchanged.

    channels: the images' channels (``embed_dim``). ``autoencoder_config`` is None: a stage-2
    checkpoint of a pixel model needs nothing else to be restored.
    """

    downsample_factor = 1
    autoencoder_config = None
    checkpoint_path = None

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.freeze(1.0, fitted=True)

    @property
    def embed_dim(self) -> int:
        return self.channels

    @property
    def in_channels(self) -> int:
        return self.channels

    def unscaled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → the same values (``encode`` returns a copy: callers may modify it)."""
        return images

    def decode_unscaled(self, raw: torch.Tensor) -> torch.Tensor:
        """The identity, unclamped (image guidance differentiates through it)."""
        return raw

    def fingerprint(self) -> str:
        return "identity"

    def fit_scale_from(self, loader: Iterable[dict], num_batches: int, device: torch.device) -> float:
        """Pixels keep scale 1 (data are already in [-1, 1])."""
        return 1.0
