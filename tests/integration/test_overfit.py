"""Models actually learn: overfit one real batch and watch the objective move."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from tests.conftest import compose_config


def real_batch(fmnist_dir, n: int = 8) -> dict:
    dm = FashionMNISTDataModule(str(fmnist_dir), batch_size=n, train_subset=n, val_subset=n)
    dm.setup()
    return next(iter(DataLoader(dm.train_set, batch_size=n)))


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = ((x.clamp(-1, 1) - y) / 2).square().mean()
    return float(-10 * torch.log10(mse))


class OneBatch(pl.LightningDataModule):
    def __init__(self, batch: dict) -> None:
        super().__init__()
        self.batch, self.resolution = batch, batch["image"].shape[-1]

    def train_dataloader(self):
        return DataLoader([{k: v[i] for k, v in self.batch.items()} for i in range(len(self.batch["label"]))],
                          batch_size=len(self.batch["label"]))


def test_autoencoder_overfits_a_batch_and_psnr_rises(fmnist_dir):
    torch.manual_seed(0)
    cfg = compose_config("train_ae", ["autoencoder.encoder.ch=16", "loss.disc_start=100000",
                                      "loss.perceptual_weight=0", "loss.lpips=null",  # speed: L1 only
                                      "module.optimizer.lr=2e-3", "module.warmup_steps=0"])
    module = instantiate(cfg.module)
    batch = real_batch(fmnist_dir)
    before = psnr(module.eval().reconstruct(batch["image"]), batch["image"])
    trainer = pl.Trainer(max_epochs=120, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=OneBatch(batch))
    after = psnr(module.eval().reconstruct(batch["image"]), batch["image"])
    assert int(module.train_step) == 120
    assert after > before + 10, (before, after)


def test_discriminator_is_not_run_before_disc_start(fmnist_dir):
    cfg = compose_config("train_ae", ["autoencoder.encoder.ch=16", "loss.disc_start=3"])
    ae, loss = instantiate(cfg.autoencoder), instantiate(cfg.loss)
    calls = []
    loss.discriminator.register_forward_hook(lambda *args: calls.append(1))
    x = real_batch(fmnist_dir, 4)["image"]
    for step in range(5):
        x_rec, reg = ae(x)
        total, log = loss.generator_step(x, x_rec, reg, step, ae.last_layer)
        d_loss, d_log = loss.discriminator_step(x, x_rec, step)
        if step < 3:
            assert not calls and "g_loss" not in log and not d_log and float(d_loss) == 0.0
        else:
            assert "g_loss" in log and "d_loss" in d_log and log["adaptive_weight"] > 0
    assert len(calls) == 2 * 3  # steps 3, 4: one generator pass + real and fake for the disc


def test_learned_logvar_is_optimised(fmnist_dir):
    cfg = compose_config("train_ae", ["autoencoder.encoder.ch=16", "module.lr_decay=constant"])
    module = instantiate(cfg.module)  # constant LR: the cosine needs a trainer's step count
    optimizer, _ = module.configure_optimizers()[0]
    assert any(p is module.loss.logvar for group in optimizer.param_groups for p in group["params"])


# Tiny denoisers of each family (~0.2-0.3M parameters). 150 Adam steps on one batch of 16 bring
# the fixed-noise loss to 0.19 (UNet), 0.23 (DiT), 0.25 (U-ViT) of its start; an untrained or
# input-blind net stays near 1 (the DiT's zero-initialised output gives exactly E[ε²] at start).
TINY_BACKBONES = {
    "unet": ["backbone.model_channels=16"],
    "dit": ["backbone=dit", "backbone.hidden_size=64", "backbone.depth=2", "backbone.num_heads=2"],
    "uvit": ["backbone=uvit", "backbone.hidden_size=64", "backbone.depth=3", "backbone.num_heads=2"],
}


@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONES))
def test_latent_diffusion_loss_falls_well_below_its_start(backbone, tiny_ae_ckpt, fmnist_dir):
    torch.manual_seed(0)
    cfg = compose_config("train_ldm", [f"first_stage.ckpt={tiny_ae_ckpt}", *TINY_BACKBONES[backbone],
                                       "conditioner_context_dim=32"])
    module = instantiate(cfg.module)
    batch = real_batch(fmnist_dir, 16)
    module.first_stage.fit_scale(batch["image"])
    optimizer = torch.optim.Adam(module.model.parameters(), lr=2e-3)

    def fixed_loss() -> float:
        with torch.random.fork_rng():
            torch.manual_seed(1)
            module.model.eval()
            with torch.no_grad():
                return float(module.diffusion_loss(batch, module.model))

    start = fixed_loss()
    module.model.train()
    for _ in range(150):
        loss = module.diffusion_loss(batch, module.model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = fixed_loss()
    assert 0.9 < start < 1.3 and end < start / 3, (start, end)
