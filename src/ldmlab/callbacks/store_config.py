"""Store what identifies the run inside every checkpoint (plain containers, weights_only-safe)."""

from __future__ import annotations

import pytorch_lightning as pl

from ldmlab.checkpoints import CONFIG_KEY, WORLD_SIZE_KEY


class StoreConfig(pl.Callback):
    """Puts the run's resolved config (a plain dict) under ``checkpoint["ldmlab_config"]`` so a
    checkpoint can rebuild its own architecture, e.g. the frozen first stage of stage 2, and a
    resume can tell whether it continues the same run; and the number of ranks that wrote it
    under ``checkpoint["ldmlab_world_size"]``."""

    def __init__(self, config: dict) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict):
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[WORLD_SIZE_KEY] = trainer.world_size
