"""Where each reusable part lives in ldmlab's configs: the keys ``FieldError`` messages name.

A part missing here lives at its own name (``sampler``, ``guidance``, ``data``, ``module``, ...).
"""

from __future__ import annotations

from ldmlab.utils.errors import use_part_keys

PART_KEYS = {
    "schedule": "diffusion.schedule",
    "parameterization": "diffusion.parameterization",
    "objective": "diffusion.objective",
    "loss_weighting": "diffusion.loss_weighting",
    "timestep_sampler": "diffusion.timestep_sampler",
    "diffusion_loss": "diffusion.loss",
    "latent_shape": "",  # first_stage_embed_dim, first_stage_downsample_factor: top-level keys
    "inversion": "",  # invert / interpolate keep the inversion study's settings at the top level
    "lpips": "loss.lpips",
    "semantic_encoder": "conditioner.embedders.z_sem",
    "regularizer": "diffusion.objective.regularizer",
    "guidance_sweep": "callbacks.guidance_sweep",
    "reconstruction_fid": "callbacks.reconstruction_fid",
    "model_checkpoint": "callbacks.model_checkpoint",
    "auto_wrap_policy": "trainer.strategy.auto_wrap_policy",
    "sweep": "",  # evaluate keeps its sweep's settings at the top level (training: callbacks.guidance_sweep)
}


def install() -> None:
    """Make ``FieldError`` messages name ldmlab's config keys in this context (a command, a test session)."""
    use_part_keys(PART_KEYS)
