"""Case 4: one stage-1 training step (generator step with LPIPS + adaptive GAN term, then the
discriminator step), both with the same ``AutoencoderLoss`` (LPIPS-VGG16 + patch discriminator).

ours: ``conf/train_ae.yaml``'s autoencoder as ``AutoencoderModule.training_step`` drives it (Lightning's
loop overhead not included); theirs: an architecture-matched diffusers ``AutoencoderKL`` in its place
(``encode().latent_dist.sample()`` → ``decode().sample``, KL from ``latent_dist.kl()``).
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ldmlab.autoencoder.regularizers.base import RegularizerOutput
from ldmlab.optim.optimizers import build_optimizer
from sbs.common import Row, Settings, compare
from sbs.models import compose_config, diffusers_vae, params
from sbs.timing import autocast

TARGET = 1.2
BATCH = 16  # data.batch_size of train_ae
OVERRIDES = ["loss.lpips.pretrained=false"]  # random LPIPS weights: same cost, no weight files needed


def _training_step(autoencode, loss_fn, last_layer, ae_params, x, s: Settings, cfg, configured: bool):
    """One AutoencoderModule-style step; ``autoencode(x) → (x_rec, RegularizerOutput)``. Optimisers:
    the configured ones (``configured``: ours, fused Adam) or plain Adam as diffusers' examples build it."""
    def adam(node, parameters):
        if configured:  # as AutoencoderModule builds it (fused; foreach under mixed precision)
            precision = "bf16-mixed" if s.dtype == "bf16" else "32-true"
            return build_optimizer(instantiate(node), parameters, "module.optimizer", precision)
        return torch.optim.Adam(parameters, lr=node.lr, betas=tuple(node.betas))

    opt_ae = adam(cfg.module.optimizer, ae_params + loss_fn.generator_parameters())
    opt_d = adam(cfg.module.disc_optimizer, loss_fn.discriminator.parameters())
    step_index, clip = loss_fn.disc_start, cfg.module.gradient_clip_val  # discriminator active

    def step() -> None:
        loss_fn.discriminator.requires_grad_(False)  # toggle_optimizer(opt_ae)
        with autocast(s.device, s.dtype):
            x_rec, reg = autoencode(x)
            loss, _ = loss_fn.generator_step(x, x_rec, reg, step_index, last_layer())
        opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae_params, clip)
        opt_ae.step()
        loss_fn.discriminator.requires_grad_(True)
        with autocast(s.device, s.dtype):
            d_loss, _ = loss_fn.discriminator_step(x, x_rec, step_index)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(loss_fn.discriminator.parameters(), clip)
        opt_d.step()
    return step


def run(s: Settings, side: int = 32, overrides: tuple[str, ...] = (), batch: int = BATCH) -> list[Row]:
    """Images of ``side``² (channels: ``data.channels`` of train_ae + ``overrides``), ``batch`` of them
    unless ``s.quick`` (2)."""
    batch = 2 if s.quick else batch
    cfg = compose_config("train_ae", [*OVERRIDES, *overrides])
    torch.manual_seed(0)
    x = (torch.rand(batch, cfg.data.channels, side, side) * 2 - 1).to(s.device)
    ours = instantiate(cfg.autoencoder).to(s.device).train()
    vae = diffusers_vae(OmegaConf.to_container(cfg.autoencoder, resolve=True)).to(s.device).train()
    loss_ours, loss_theirs = instantiate(cfg.loss).to(s.device), instantiate(cfg.loss).to(s.device)

    def theirs_autoencode(images):
        posterior = vae.encode(images).latent_dist
        kl = posterior.kl().mean()
        return vae.decode(posterior.sample()).sample, RegularizerOutput(loss=kl, log={"kl": kl.detach()})

    step_ours = _training_step(ours, loss_ours, lambda: ours.last_layer, list(ours.parameters()), x, s, cfg,
                               configured=True)
    step_theirs = _training_step(theirs_autoencode, loss_theirs, lambda: vae.decoder.conv_out.weight,
                                 list(vae.parameters()), x, s, cfg, configured=False)
    what = "stage-1 step: AE fwd, L2+LPIPS+GAN (adaptive w), bwd, Adam; disc fwd/bwd/Adam"
    return [compare("stage1_step", what, batch, step_ours, step_theirs,
                    (params(ours), params(vae)), TARGET, s,
                    loss_params=f"{params(loss_ours):,} (LPIPS + discriminator + logvar, both)")]

