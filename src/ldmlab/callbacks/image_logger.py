"""Log image grids (inputs vs reconstructions, prior samples, diffusion samples) to wandb and PNG."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from torchvision.utils import make_grid, save_image

from ldmlab.backbones.sharding import fsdp_root
from ldmlab.config.types import PositiveInt
from ldmlab.utils.atomic_output import write_file
from ldmlab.utils.images import to_unit


class ImageLogger(pl.Callback):
    """Every ``every_n_epochs`` validation epochs (and after the last), ask the module for named
    image batches via ``module.log_images(batch, n) -> dict[str, (N, C, H, W) in [-1, 1]]`` and
    write ``<run_dir>/images/<name>_epoch<E>.png`` plus a wandb image per name. Rank 0 only (under
    FSDP every rank samples, since a sharded block runs on all ranks together; rank 0 writes).
    """

    def __init__(self, out_dir: str, every_n_epochs: PositiveInt = 1, num_images: PositiveInt = 16,
                 nrow: PositiveInt = 8):
        self.out_dir = Path(out_dir)
        self.every_n_epochs, self.num_images, self.nrow = every_n_epochs, num_images, nrow

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 >= (trainer.max_epochs or 0)
        if trainer.sanity_checking or not (last or (epoch + 1) % self.every_n_epochs == 0):
            return
        if not (trainer.is_global_zero or fsdp_root(trainer)):  # sharded blocks: every rank samples
            return
        batch = next(iter(trainer.datamodule.val_dataloader()))
        batch = {k: v[: self.num_images] for k, v in batch.items()}
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        was_training = pl_module.training
        pl_module.eval()
        grids = pl_module.log_images(batch, self.num_images)
        pl_module.train(was_training)
        if not trainer.is_global_zero:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, images in grids.items():
            grid = make_grid(to_unit(images), nrow=self.nrow, padding=1)
            write_file(self.out_dir / f"{name}_epoch{epoch:03d}.png", lambda tmp, g=grid: save_image(g, tmp))
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=f"images/{name}", images=[grid], step=trainer.global_step)
