"""Rebuild a trained LatentDiffusionModule from its checkpoint alone (weights-only, allow-listed)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ldmlab.checkpoints import (
    FIRST_STAGE_CONFIG,
    check_targets,
    instantiate_stored,
    read_checkpoint,
    stored_config,
)
from ldmlab.config.renamed import renamed_slot
from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.runs.layout import resolve_run_checkpoint
from ldmlab.sampling.samplers.base import Sampler
from ldmlab.utils.errors import ConfigError

KEY = "ckpt"
FIX = "give a train_ldm .ckpt or run dir, e.g. ckpt=logs/train_ldm/latest"


def resolve_ldm_checkpoint(ckpt: str | None, log_dir: str) -> Path:
    """An explicit path (file or run dir), or the ``last`` checkpoint of ``<log_dir>/train_ldm/latest``."""
    return resolve_run_checkpoint(ckpt, log_dir, "train_ldm", KEY, FIX, "trained LDM")


def load_ldm(path: Path) -> LatentDiffusionModule:
    """The module with its EMA, first stage and latent scale restored; on the CPU, in eval mode."""
    checkpoint = read_checkpoint(path, KEY, FIX)
    module = build_ldm(ldm_architecture(checkpoint, path), path)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ConfigError(KEY, f"{path}: weights do not match its config ({str(err)[:200]})", FIX) from None
    return module.eval()


def ldm_architecture(checkpoint: dict, path: Path) -> dict:
    """What rebuilds a stage-2 checkpoint's module without its weights: ``{"module": the module
    config without optimiser, FIRST_STAGE_CONFIG: the first stage's own architecture or None}``."""
    config = stored_config(checkpoint, path, KEY, FIX)
    module_config = config.get("module")
    if not isinstance(module_config, dict) or FIRST_STAGE_CONFIG not in checkpoint \
            or not isinstance(module_config.get("first_stage"), dict):
        raise ConfigError(KEY, f"{path} is not an ldmlab stage-2 checkpoint", FIX)
    module_config = renamed_slot({k: v for k, v in module_config.items() if k != "optimizer"})
    module_config = _with_objective(module_config)
    return {"module": module_config, FIRST_STAGE_CONFIG: checkpoint[FIRST_STAGE_CONFIG]}


def build_ldm(architecture: dict, path: Path | str) -> LatentDiffusionModule:
    """A freshly initialised module from ``ldm_architecture``'s dict (data: every ``_target_`` is
    checked against the allow-list first)."""
    if isinstance(architecture, DictConfig):  # handed over by Hydra (a stored first-stage argument)
        architecture = OmegaConf.to_container(architecture, resolve=False)
    module_config = renamed_slot(dict(architecture["module"]))  # a stored pre-rename architecture
    autoencoder_config = architecture[FIRST_STAGE_CONFIG]  # None: pixel space (first_stage=identity)
    check_targets(autoencoder_config, path, KEY)
    stored = {"autoencoder_config": autoencoder_config} if autoencoder_config is not None else {}
    first_stage = instantiate_stored(  # not recursive: the autoencoder config is data (checked above)
        module_config.pop("first_stage") | {"_recursive_": False}, path, KEY, **stored)
    return instantiate_stored(module_config, path, KEY, first_stage=first_stage, optimizer=None)


def stored_datamodule(path: Path):
    """The datamodule of the training config inside a checkpoint (weights only, allow-listed)."""
    config = stored_config(read_checkpoint(path, KEY, FIX), path, KEY, FIX)
    if not isinstance(config.get("data"), dict):
        raise ConfigError("data", f"{path} stores no data config", "choose one, e.g. data=fashion_mnist")
    return instantiate_stored(config["data"], path, KEY)


def _with_objective(module_config: dict) -> dict:
    """The module config as the module takes it now: the parameterization on the objective only.
    Older checkpoints also stored it on the module (dropped: the objective's is the same config);
    those written before the objective existed stored ``loss`` and ``loss_weighting`` on the
    module too (trained with uniform timesteps): folded into the equivalent objective."""
    if "objective" in module_config:
        return {k: v for k, v in module_config.items() if k != "parameterization"}
    rest = {k: v for k, v in module_config.items() if k not in ("loss", "loss_weighting", "parameterization")}
    objective = {"_target_": "ldmlab.diffusion.objective.DiffusionObjective",
                 "parameterization": module_config.get("parameterization"),
                 "loss_weighting": module_config.get("loss_weighting"), "loss": module_config.get("loss")}
    return rest | {"objective": objective}


def build_sampler(config: DictConfig | None, module: LatentDiffusionModule) -> Sampler:
    """The sampler of the command's ``sampler`` group (None: the checkpoint's own), checked
    against the model's schedule now, not after minutes of work (``sampler.steps`` ≤ T')."""
    sampler = instantiate(config) if config else module.sampler
    sampler.check(module.schedule.num_timesteps, module.horizon)
    return sampler
