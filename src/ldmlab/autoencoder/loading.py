"""Rebuild a trained autoencoder from a stage-1 checkpoint alone (``weights_only=True``): the
architecture comes from the config stored in the checkpoint, after its ``_target_``s pass the
allow-list."""

from __future__ import annotations

from pathlib import Path

from ldmlab.autoencoder.model import Autoencoder
from ldmlab.checkpoints import instantiate_stored, read_checkpoint, stored_config
from ldmlab.utils.errors import ConfigError, part_key

FIX = "point it at a train_ae checkpoint (e.g. logs/train_ae/latest/checkpoints/last.ckpt)"


def load_autoencoder(path: Path, key: str | None = None, fix: str = FIX) -> tuple[Autoencoder, dict]:
    """The autoencoder stored in a stage-1 checkpoint with its weights, and its config (so a
    stage-2 checkpoint can rebuild it without the stage-1 file). Errors name ``key`` (default: the
    first stage's ``ckpt``)."""
    key = key or part_key("first_stage", "ckpt")
    checkpoint = read_checkpoint(path, key, fix)
    config = stored_config(checkpoint, path, key, fix).get("autoencoder")
    if not isinstance(config, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(key, f"{path} is not an ldmlab stage-1 checkpoint", fix)
    autoencoder: Autoencoder = instantiate_stored(config, path, key)
    prefix = "autoencoder."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        autoencoder.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(key, f"{path}: weights do not match its config ({str(err)[:200]})", fix) from None
    return autoencoder, config
