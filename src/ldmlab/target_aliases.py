"""Where the classes named by checkpoints written before the package reshape (commit ea533ee and
earlier) live now: a stored ``_target_`` under an old module is read as the same class under its new
module, so old checkpoints load (and sample) exactly as before. Only ``_target_`` values move;
the moved target must still be on ``checkpoints.ARCHITECTURE_TARGETS``."""

from __future__ import annotations

from typing import Any

MOVED_MODULES = {  # old module (or package) → new one
    "ldmlab.classifier.noisy_module": "ldmlab.models.noisy_classifier",
    "ldmlab.autoencoder.module": "ldmlab.models.autoencoder",
    "ldmlab.classifier.module": "ldmlab.models.classifier",
    "ldmlab.diffusion.module": "ldmlab.models.ldm",
    "ldmlab.diffusion.restore": "ldmlab.models.restore",
    "ldmlab.diffusion.representation_objective": "ldmlab.semantic.objective",
    "ldmlab.diffusion.samplers.ddim_inversion": "ldmlab.sampling.inversion",
    "ldmlab.diffusion.diffusers_first_stage": "ldmlab.first_stage.diffusers",
    "ldmlab.diffusion.identity_first_stage": "ldmlab.first_stage.identity",
    "ldmlab.diffusion.semantic_first_stage": "ldmlab.semantic.first_stage",
    "ldmlab.conditioning.semantic_encoder": "ldmlab.semantic.encoder",
    "ldmlab.diffusion.guidance.condition": "ldmlab.guidance.inputs",
    "ldmlab.diffusion.info_regularizer": "ldmlab.semantic.info_regularizer",
    "ldmlab.diffusion.latent_cache": "ldmlab.first_stage.latent_cache",
    "ldmlab.diffusion.autoencoding": "ldmlab.semantic.autoencoding",
    "ldmlab.diffusion.first_stage": "ldmlab.first_stage.autoencoder",
    "ldmlab.utils.resume_contract": "ldmlab.config.resume_contract",
    "ldmlab.evaluation.job_config": "ldmlab.config.job_config",
    "ldmlab.utils.shipped_config": "ldmlab.config.shipped",
    "ldmlab.utils.trainer_knobs": "ldmlab.config.trainer_knobs",
    "ldmlab.utils.fresh_run_dir": "ldmlab.runs.fresh_dir",
    "ldmlab.diffusion.samplers": "ldmlab.sampling.samplers",
    "ldmlab.diffusion.denoiser": "ldmlab.sampling.denoiser",
    "ldmlab.diffusion.generate": "ldmlab.sampling.generate",
    "ldmlab.diffusion.guidance": "ldmlab.guidance",
    "ldmlab.utils.config_types": "ldmlab.config.types",
    "ldmlab.utils.optimizers": "ldmlab.optim.optimizers",
    "ldmlab.utils.lr_scaling": "ldmlab.optim.lr_scaling",
    "ldmlab.utils.run_layout": "ldmlab.runs.layout",
    "ldmlab.utils.schedules": "ldmlab.optim.lr_schedules",
    "ldmlab.nn.mlp_denoiser": "ldmlab.backbones.mlp",
    "ldmlab.utils.run_stamp": "ldmlab.runs.stamp",
    "ldmlab.utils.conf_dir": "ldmlab.config.conf_dir",
    "ldmlab.utils.settings": "ldmlab.config.settings",
    "ldmlab.utils.multirun": "ldmlab.runs.multirun",
    "ldmlab.utils.ddp_jobs": "ldmlab.runs.ddp_jobs",
    "ldmlab.diffusion.mmd": "ldmlab.semantic.mmd",
    "ldmlab.interpolate": "ldmlab.commands.interpolate",
    "ldmlab.evaluate": "ldmlab.commands.evaluate",
    "ldmlab.nn.unet": "ldmlab.backbones.unet",
    "ldmlab.nn.ema": "ldmlab.optim.ema",
    "ldmlab.sample": "ldmlab.commands.sample",
    "ldmlab.invert": "ldmlab.commands.invert",
    "ldmlab.export": "ldmlab.commands.export",
    "ldmlab.report": "ldmlab.commands.report",
    "ldmlab.train": "ldmlab.commands.train",
    "ldmlab.cli": "ldmlab.commands.cli",
}


def current_target(target: str) -> str:
    """``target`` with its module renamed when it moved (longest old prefix first), else unchanged."""
    for old, new in MOVED_MODULES.items():
        if target.startswith(old + "."):
            return new + target[len(old):]
    return target


def current_targets(node: Any, max_depth: int = 64) -> Any:
    """A copy of a stored config (plain dicts and lists) with every ``_target_`` made current.

    Each container is copied once (shared and self-containing ones too); deeper than
    ``max_depth`` a node is kept as it is (``checkpoints.check_targets`` refuses it)."""
    copies: dict[int, Any] = {}

    def copy(value: Any, depth: int) -> Any:
        if not isinstance(value, dict | list) or depth > max_depth:
            return value
        if id(value) in copies:
            return copies[id(value)]
        if isinstance(value, list):
            out = copies[id(value)] = []
            out.extend(copy(v, depth + 1) for v in value)
            return out
        out = copies[id(value)] = {}
        for k, v in value.items():
            out[k] = current_target(v) if k == "_target_" and isinstance(v, str) else copy(v, depth + 1)
        return out

    return copy(node, 0)
