"""LightningModule training the domain classifier (loading it back: ``classifier.loading``)."""

from __future__ import annotations

from functools import partial

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from ldmlab.classifier.network import ClassifierNetwork
from ldmlab.config.types import NonNegativeInt
from ldmlab.optim.optimizers import optimizer_and_schedule, trainer_precision
from ldmlab.utils.errors import FieldError, part_key
from ldmlab.utils.finite import LossWatch


def random_shift_flip(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Light augmentation of (B, C, H, W): random horizontal flip and a random integer shift of up
    to ``max_shift`` pixels per image (edge pixels repeated into the gap)."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift <= 0:
        return x
    height, width = x.shape[-2:]
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (x.shape[0], 2)).tolist()
    crops = [padded[i, :, top : top + height, left : left + width] for i, (top, left) in enumerate(offsets)]
    return torch.stack(crops)


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of a ``ClassifierNetwork`` on dict batches {"image", "label"}.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` (torchmetrics, micro accuracy).
    ``scheduler`` is an optional partial called as ``scheduler(optimizer, total_steps=...)``
    (e.g. OneCycleLR) and stepped every optimiser step. The network's ``config`` is saved as the
    ``network`` hyperparameter so ``load_classifier`` can rebuild it.
    """

    def __init__(
        self,
        network: ClassifierNetwork,
        optimizer: partial,
        scheduler: partial | None = None,
        augment: bool = True,
        max_shift: NonNegativeInt = 2,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.loss_watch = LossWatch("train/loss")
        self.save_hyperparameters({"network": network.config}, logger=False)
        self.network, self.optimizer, self.scheduler = network, optimizer, scheduler
        self.augment, self.max_shift, self.label_smoothing = augment, max_shift, label_smoothing
        self.train_acc = MulticlassAccuracy(network.num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(network.num_classes, average="micro")

    def check_data(self, datamodule) -> None:
        """Fail before training unless the data's channels, size and classes fit the network."""
        net = self.network
        if datamodule.channels != net.in_channels:
            raise FieldError(
                "classifier", "in_channels", f"data has {datamodule.channels} channels, the classifier "
                f"expects {net.in_channels}", f"set {{key}}=${{{part_key('data', 'channels')}}}",
            )
        if datamodule.resolution != net.resolution:
            raise FieldError(
                "classifier", "resolution", f"data is {datamodule.resolution}px, the classifier is built "
                f"for {net.resolution}px", f"set {{key}}=${{{part_key('data', 'resolution')}}}",
            )
        classes = getattr(datamodule, "num_classes", net.num_classes)
        if classes != net.num_classes:
            raise FieldError(
                "classifier", "num_classes", f"data has {classes} classes, the classifier {net.num_classes}",
                f"set {{key}}={classes}",
            )

    def _loss(self, batch: dict, train: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch["image"], batch["label"]
        if train and self.augment:
            x = random_shift_flip(x, self.max_shift)
        logits = self.network(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing if train else 0.0)
        return loss, logits, y

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._loss(batch, train=True)
        self.loss_watch.observe(loss, self)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits, y = self._loss(batch, train=False)
        self.val_acc(logits, y)
        self.log("val/loss", loss, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self):
        steps = int(self.trainer.estimated_stepping_batches)
        return optimizer_and_schedule(self.optimizer, self.network.parameters(), self.scheduler, steps,
                                      part_key("module", "optimizer"), trainer_precision(self))
