"""Fitting a first stage's latent scale once, at the start of the training that uses its latents."""

from __future__ import annotations


def fit_latent_scale(module) -> None:
    """Fit ``module.first_stage``'s scale from ``module.scale_fit_batches`` training batches (all
    ranks pooled) and print it, unless it is set already (a resumed run keeps its own)."""
    if bool(module.first_stage.scale_initialized):
        return
    loader = module.trainer.datamodule.train_dataloader()
    scale = module.first_stage.fit_scale_from(loader, module.scale_fit_batches, module.device)
    module.print(f"scale_by_std: latent scale factor = {scale:.5f}")
