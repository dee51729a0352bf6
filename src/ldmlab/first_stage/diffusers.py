"""``first_stage=diffusers``: a diffusers ``AutoencoderKL`` directory (e.g. Stable Diffusion's kl-f8
VAE) as the frozen first stage, behind FirstStage's interface."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ldmlab.config.types import PositiveInt
from ldmlab.first_stage.base import FirstStageBase, weights_fingerprint
from ldmlab.utils.errors import ConfigError, FieldError, part_key

try:  # an optional dependency (the dev extra): refused in one line when missing
    from diffusers import AutoencoderKL
except ImportError:
    AutoencoderKL = None

FIX = ("{key}=/path/to/vae (a diffusers AutoencoderKL dir: config.json + "
       "diffusion_pytorch_model.safetensors)")
WEIGHTS = "diffusion_pytorch_model.safetensors"


def vae_config(config: dict) -> dict:
    """The ``AutoencoderKL`` init arguments of a diffusers config (tuples as lists; other keys,
    such as ``_class_name``, dropped): plain data, stored in stage-2 checkpoints."""
    init_keys = set(inspect.signature(AutoencoderKL.__init__).parameters) - {"self"}
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in config.items() if key in init_keys}


def path_error(problem: str, fix: str = FIX) -> FieldError:
    """A bad ``first_stage.path``."""
    return FieldError("first_stage", "path", problem, fix)


def load_vae_dir(path: str | None) -> nn.Module:
    """The ``AutoencoderKL`` saved in directory ``path`` (local files, safetensors weights only);
    anything else is a ``FieldError`` naming ``first_stage.path``."""
    if not path:
        raise path_error("is not set")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise path_error(f"{root} is not a directory")
    config_file = root / "config.json"
    if not config_file.is_file():
        fix = f"{{key}}={root / 'vae'}" if (root / "vae" / "config.json").is_file() else FIX
        raise path_error(f"{root} has no config.json (not a diffusers model directory)", fix)
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except (ValueError, AttributeError):
        class_name = None
    if class_name != "AutoencoderKL":
        raise path_error(f"{root} holds a {class_name or 'non-diffusers'} model, not an AutoencoderKL")
    if not (root / WEIGHTS).is_file():
        raise path_error(f"{root} has no {WEIGHTS} (only safetensors weights are read)")
    try:
        vae = AutoencoderKL.from_pretrained(root, local_files_only=True, use_safetensors=True,
                                            low_cpu_mem_usage=False)  # no accelerate needed
    except (OSError, ValueError, RuntimeError) as err:
        raise path_error(f"{root}: cannot load the AutoencoderKL ({str(err)[:200]})") from None
    return vae.float()


class DiffusersFirstStage(FirstStageBase):
    """Frozen ``AutoencoderKL``: ``encode`` gives z = (mode of q(z|x) − shift) · scale, ``decode``
    D(z / scale + shift), images (B, C, H, W) in [-1, 1] ↔ latents (B, latent_channels, H/f, W/f).

    scale, shift: the VAE config's ``scaling_factor`` and ``shift_factor`` (null: 0); with
    ``scale_by_std`` the scale is instead fitted once as 1 / std of the latents (as FirstStage).
    ``expected_*``: what the stage-2 config was written for (checked, errors name the key).
    ``autoencoder_config``: the VAE's init arguments, stored in stage-2 checkpoints; given, the
    VAE is built from it (weights come from the checkpoint) and ``path`` is not read.
    """

    def __init__(
        self,
        path: str | None,
        expected_embed_dim: PositiveInt,
        expected_downsample_factor: PositiveInt,
        expected_channels: PositiveInt,
        scale_by_std: bool = False,
        autoencoder_config: dict | None = None,
    ) -> None:
        super().__init__()
        if AutoencoderKL is None:
            raise ConfigError(part_key("first_stage"), "needs the diffusers package (not installed)",
                              "pip install diffusers, or first_stage=default")
        if autoencoder_config is None:
            vae = load_vae_dir(path)
            autoencoder_config = vae_config(dict(vae.config))
        else:
            if isinstance(autoencoder_config, DictConfig):  # handed over by Hydra
                autoencoder_config = OmegaConf.to_container(autoencoder_config, resolve=False)
            autoencoder_config = vae_config(autoencoder_config)
            vae = AutoencoderKL(**autoencoder_config)
        self.checkpoint_path, self.autoencoder_config, self.vae = path, autoencoder_config, vae
        self.check_shape(expected_embed_dim, expected_downsample_factor, expected_channels,
                         f"is {{expected}} but the VAE {path} has {{actual}}",
                         f"{{key}}={{actual}} (or a matching {part_key('first_stage', 'path')})")
        self.shift = float(self.vae.config.shift_factor or 0.0)
        self.scale_by_std = scale_by_std
        self.freeze(self.vae.config.scaling_factor, fitted=not scale_by_std)

    @property
    def embed_dim(self) -> int:
        return self.vae.config.latent_channels

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def in_channels(self) -> int:
        """Channels of the images."""
        return self.vae.config.in_channels

    def unscaled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → the posterior mode minus shift (B, latent_channels, H/f, W/f)."""
        return self.vae.encode(images).latent_dist.mode() - self.shift

    def decode_unscaled(self, raw: torch.Tensor) -> torch.Tensor:
        """D(raw + shift), unclamped."""
        return self.vae.decode(raw + self.shift).sample

    def fingerprint(self) -> str:
        """``weights_fingerprint`` of the VAE."""
        return weights_fingerprint(self.vae)
