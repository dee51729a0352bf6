"""Reading files a user hands in, as data only.

Checkpoints load with ``torch.load(weights_only=True)``; a config stored inside one is
instantiated only after every ``_target_`` in it is found on ``ARCHITECTURE_TARGETS``, an
explicit allow-list of ldmlab classes that build networks, schedules, samplers and data. A
stored config cannot name a function (``ldmlab.utils.run_layout.write_json_atomic`` writes
files), a callback, a logger or anything outside ldmlab (``torch.load``, ``builtins.open``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from ldmlab.utils.errors import ConfigError
from ldmlab.utils.torch_files import refusal_reason

CONFIG_KEY = "ldmlab_config"  # the run's resolved config inside every checkpoint (StoreConfig)
WORLD_SIZE_KEY = "ldmlab_world_size"  # the number of ranks that wrote it (StoreConfig)

ARCHITECTURE_TARGETS = frozenset({
    "ldmlab.autoencoder.model.Autoencoder",
    "ldmlab.autoencoder.regularizers.kl.KLRegularizer",
    "ldmlab.autoencoder.regularizers.vq.VectorQuantizer",
    "ldmlab.nn.encoder.Encoder",
    "ldmlab.nn.decoder.Decoder",
    "ldmlab.nn.unet.UNet",
    "ldmlab.nn.mlp_denoiser.MLPDenoiser",
    "ldmlab.conditioning.conditioner.Conditioner",
    "ldmlab.conditioning.class_embedder.ClassEmbedder",
    "ldmlab.conditioning.concat_embedder.ConcatEmbedder",
    "ldmlab.conditioning.text_encoder.TextEmbedder",
    "ldmlab.conditioning.generator_embedder.GeneratorSampleEmbedder",
    "ldmlab.conditioning.semantic_encoder.SemanticEncoderEmbedder",
    "ldmlab.autoencoder.prior.VAEPrior",
    "ldmlab.diffusion.module.LatentDiffusionModule",
    "ldmlab.diffusion.first_stage.FirstStage",
    "ldmlab.diffusion.identity_first_stage.IdentityFirstStage",
    "ldmlab.diffusion.semantic_first_stage.SemanticFirstStage",
    "ldmlab.diffusion.diffusers_first_stage.DiffusersFirstStage",  # builds AutoencoderKL from plain data
    "ldmlab.diffusion.objective.DiffusionObjective",
    "ldmlab.diffusion.representation_objective.RepresentationObjective",
    "ldmlab.diffusion.info_regularizer.InfoRegularizer",
    "ldmlab.diffusion.timestep_samplers.uniform.UniformTimesteps",
    "ldmlab.diffusion.timestep_samplers.truncated.TruncatedTimesteps",
    "ldmlab.diffusion.timestep_samplers.log_normal.LogNormalTimesteps",
    "ldmlab.diffusion.loss.DiffusionLoss",
    "ldmlab.diffusion.loss_weighting.uniform.UniformWeighting",
    "ldmlab.diffusion.loss_weighting.min_snr.MinSNRWeighting",
    "ldmlab.diffusion.parameterizations.eps.EpsParameterization",
    "ldmlab.diffusion.parameterizations.v.VParameterization",
    "ldmlab.diffusion.parameterizations.x0.X0Parameterization",
    "ldmlab.diffusion.schedules.linear.LinearSchedule",
    "ldmlab.diffusion.schedules.scaled_linear.ScaledLinearSchedule",
    "ldmlab.diffusion.schedules.cosine.CosineSchedule",
    "ldmlab.diffusion.samplers.ddim.DDIMSampler",
    "ldmlab.diffusion.samplers.ddpm.DDPMSampler",
    "ldmlab.diffusion.samplers.dpmpp_2m.DPMPP2MSampler",
    "ldmlab.data.fashion_mnist.FashionMNISTDataModule",
    "ldmlab.data.image_folder.ImageFolderDataModule",
    "ldmlab.data.torchvision_sets.TorchvisionDataModule",
    "ldmlab.data.sample_transforms.AddCaption",
    "ldmlab.data.sample_transforms.AddLowRes",
})
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


def read_checkpoint(path: str | Path, key: str, fix: str) -> dict[str, Any]:
    """The dict stored in ``path``, read with ``weights_only=True`` on the CPU; a missing,
    unreadable or code-carrying file is a ``ConfigError`` naming ``key`` (the config key that
    gave the path) and ``fix``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(key, f"{path} does not exist", fix)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch.load refuses, the file is at fault
        raise ConfigError(key, f"{path} is not a readable weights-only checkpoint "
                               f"({refusal_reason(path, err)})", fix) from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(key, f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict", fix)
    return checkpoint


def stored_config(checkpoint: Mapping, path: str | Path, key: str, fix: str) -> dict[str, Any]:
    """The run config stored in a checkpoint (``CONFIG_KEY``), checked to be plain data."""
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise ConfigError(key, f"{path} stores no ldmlab run config", fix)
    return config


def check_targets(node: Any, path: str | Path, key: str) -> None:
    """Refuse a stored config node unless every ``_target_`` in it is allow-listed, every leaf is
    plain YAML data and no value is an interpolation (stored configs are saved resolved;
    ``${...}`` would be evaluated). An OmegaConf node is checked unresolved."""
    if isinstance(node, DictConfig | ListConfig):  # e.g. a stored node Hydra passed on as a kwarg
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and target not in ARCHITECTURE_TARGETS:
            raise ConfigError(key, f"{path} stores _target_ {target!r}, which is not an allow-listed "
                                   "ldmlab architecture class; refusing to run it",
                              "use a checkpoint written by ldmlab's own training")
        for name, value in node.items():
            if not isinstance(name, str) or (name[:1] == name[-1:] == "_" and name not in _HYDRA_KEYS):
                raise ConfigError(key, f"{path} stores an unexpected key {name!r}", "use ldmlab checkpoints")
            check_targets(value, path, key)
    elif isinstance(node, list | tuple):
        for value in node:
            check_targets(value, path, key)
    elif isinstance(node, str) and "${" in node:
        raise ConfigError(key, f"{path} stores an interpolation {node!r}", "use an ldmlab checkpoint")
    elif node is not None and not isinstance(node, str | int | float | bool):
        raise ConfigError(key, f"{path} stores a {type(node).__name__} in its config",
                          "use an ldmlab checkpoint")


def instantiate_stored(node: Mapping, path: str | Path, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` for a config read from ``path``, after
    ``check_targets``; ``kwargs`` come from the code, not from the file."""
    check_targets(node, path, key)
    return instantiate(node, **kwargs)
