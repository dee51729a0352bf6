"""Find and load a trained noisy-latent classifier (for classifier guidance) as plain data only.

The file is read with ``torch.load(weights_only=True)``; the network is rebuilt from the plain
numbers ``NoisyClassifierModule.on_save_checkpoint`` stored under ``"noisy_classifier"``, never
from a config to instantiate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ldmlab.checkpoints import read_checkpoint
from ldmlab.classifier.noisy_network import NoisyLatentClassifier
from ldmlab.classifier.plain_config import is_plain, network_config
from ldmlab.runs.layout import resolve_run_checkpoint
from ldmlab.utils.errors import ConfigError, part_key

TASK = "train_noisy_classifier"
RECORD = "noisy_classifier"  # NoisyClassifierModule's checkpoint entry (noisy_module.CHECKPOINT_KEY)
NETWORK_FIELDS = {"in_channels": int, "num_classes": int, "model_channels": int, "channel_mult": list,
                  "num_res_blocks": int, "attention_resolutions": list, "num_heads": int,
                  "dropout": int | float, "pool_heads": int}


@dataclass(frozen=True)
class NoisyClassifierCheckpoint:
    """A trained noisy-latent classifier and what it was trained on.

    ``network``: eval mode, on the CPU, gradients off, EMA weights where the run kept an EMA.
    ``latent_shape``: (C, h, w) of the scaled latents z = scale_factor · E(x) it classifies;
    ``first_stage_fingerprint``: ``FirstStage.fingerprint()`` of that autoencoder;
    ``alphas_cumprod``: (T,) float64, the ᾱ_t of the training schedule (t ∈ {0, …, T−1}).
    """

    network: NoisyLatentClassifier
    num_classes: int
    latent_shape: tuple[int, int, int]
    scale_factor: float
    first_stage_fingerprint: str
    alphas_cumprod: torch.Tensor


def _key_and_fix() -> tuple[str, str]:
    """The key of the checkpoint classifier guidance reads, and the fix naming it."""
    key = part_key("guidance", "classifier_ckpt")
    return key, f"run `make train-noisy-classifier` or give {key}=..."


def resolve_noisy_classifier(ckpt: str | None, log_dir: str) -> Path:
    """An explicit path (.ckpt file or run dir), or the ``last`` checkpoint of
    ``<log_dir>/train_noisy_classifier/latest``."""
    key, fix = _key_and_fix()
    return resolve_run_checkpoint(ckpt, log_dir, TASK, key, fix, "trained noisy classifier", fix)


def load_noisy_classifier(path: str | Path) -> NoisyClassifierCheckpoint:
    """The classifier stored in a ``train_noisy_classifier`` checkpoint; anything missing, of the
    wrong type or inconsistent raises ``ConfigError`` naming the guidance's ``classifier_ckpt``."""
    path, (key, fix) = Path(path).expanduser(), _key_and_fix()
    checkpoint = read_checkpoint(path, key, fix)
    record, state = checkpoint.get(RECORD), checkpoint.get("state_dict")
    if not isinstance(record, dict) or not isinstance(state, dict):
        raise ConfigError(key, f"{path} is not a {TASK} checkpoint (no '{RECORD}' entry)", fix)
    try:
        network = NoisyLatentClassifier(**network_config(record.get("network"), NETWORK_FIELDS))
        num_classes, latent_shape, scale, fingerprint, alphas = _record_fields(record, network)
    except (TypeError, ValueError) as err:
        raise ConfigError(key, f"{path} stores an unusable '{RECORD}' entry ({err})", fix) from None
    prefix = "ema.shadow." if any(k.startswith("ema.shadow.") for k in state) else "network."
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        raise ConfigError(key, f"{path}: weights do not match the stored network ({str(err)[:300]})",
                          fix) from None
    return NoisyClassifierCheckpoint(
        network=network.eval().requires_grad_(False), num_classes=num_classes, latent_shape=latent_shape,
        scale_factor=scale, first_stage_fingerprint=fingerprint, alphas_cumprod=alphas,
    )


def _record_fields(record: dict, network: NoisyLatentClassifier) -> tuple:
    """(num_classes, latent_shape, scale_factor, fingerprint, ᾱ (T,) float64), checked."""
    num_classes, shape = record.get("num_classes"), record.get("latent_shape")
    scale, fingerprint = record.get("scale_factor"), record.get("first_stage_fingerprint")
    alphas = record.get("alphas_cumprod")
    if not is_plain(num_classes, int) or num_classes != network.num_classes:
        raise ValueError(f"num_classes={num_classes!r} differs from the network's {network.num_classes}")
    if not is_plain(shape, list) or len(shape) != 3 or min(shape) < 1 or shape[0] != network.in_channels:
        raise ValueError(f"latent_shape={shape!r} is not [C={network.in_channels}, h, w]")
    if not is_plain(scale, float) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale_factor={scale!r} is not a positive float")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError(f"first_stage_fingerprint={fingerprint!r} is not a string")
    if not isinstance(alphas, list) or len(alphas) < 2 or not all(is_plain(a, float) for a in alphas):
        raise ValueError("alphas_cumprod is not a list of floats")
    alphas_cumprod = torch.tensor(alphas, dtype=torch.float64)
    if not bool(((alphas_cumprod >= 0) & (alphas_cumprod <= 1)).all()):
        raise ValueError("alphas_cumprod has values outside [0, 1]")
    return num_classes, (shape[0], shape[1], shape[2]), scale, fingerprint, alphas_cumprod
