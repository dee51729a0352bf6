"""Rebuild a trained LatentDiffusionModule from its checkpoint alone (weights_only loading)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra.utils import instantiate

from ldmlab.callbacks.store_config import CONFIG_KEY
from ldmlab.diffusion.module import FIRST_STAGE_CONFIG, LatentDiffusionModule
from ldmlab.utils.errors import ConfigError


def resolve_ldm_checkpoint(ckpt: str | None, log_dir: str) -> Path:
    """An explicit path, or the ``last`` checkpoint of ``<log_dir>/train_ldm/latest``."""
    if ckpt:
        path = Path(ckpt).expanduser()
        if path.is_dir() and (path / "summary.json").is_file():  # a run dir
            path = Path(json.loads((path / "summary.json").read_text())["checkpoints"]["last"])
        if not path.is_file():
            raise ConfigError("ckpt", f"{path} does not exist", "give a train_ldm .ckpt or run dir")
        return path
    summary = Path(log_dir) / "train_ldm" / "latest" / "summary.json"
    if not summary.is_file():
        raise ConfigError("ckpt", f"no trained LDM ({summary} is missing)", "run `make train-ldm`")
    return Path(json.loads(summary.read_text())["checkpoints"]["last"])


def load_ldm(path: Path, map_location: str | torch.device = "cpu") -> LatentDiffusionModule:
    """The module with its EMA, first stage and latent scale restored; in eval mode."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    config = checkpoint.get(CONFIG_KEY)
    if not config or FIRST_STAGE_CONFIG not in checkpoint:
        raise ConfigError("ckpt", f"{path} is not an ldmlab stage-2 checkpoint", "use a train_ldm run")
    module_config = config["module"]
    first_stage = instantiate(  # not recursive: the autoencoder config is data here
        module_config.pop("first_stage") | {"_recursive_": False},
        autoencoder_config=checkpoint[FIRST_STAGE_CONFIG],
    )
    module: LatentDiffusionModule = instantiate(module_config, first_stage=first_stage)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()
