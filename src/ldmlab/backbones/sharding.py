"""FSDP for stage 2 (``trainer=fsdp``): the denoiser's blocks are sharded, the rest is replicated.

``shard_blocks`` is the auto-wrap policy of Lightning's ``FSDPStrategy``: each module of the given
block classes (the UNet's stages, DiT / U-ViT blocks) becomes an FSDP unit sharded its own way
(``FULL_SHARD``); everything else (the first stage, the conditioner, the backbone's stem and head,
and the EMA copies of those) stays in the root unit, whose ``trainer.strategy.sharding_strategy``
is ``NO_SHARD``: replicated, its gradients all-reduced, as under DDP. So what runs outside a
training step (latent-scale fitting, sampling, the EMA update, the NaN scan) sees full tensors
there, and a block gathers its shards in its own forward, which every rank must then call.

The EMA copy's blocks are units of the same classes built the same way, so each of its shards
lines up with the trained block's shard and ``EMA.update`` averages shard against shard: the same
arithmetic as on one device. The first stage's ``ResnetBlock``s are not on the list: the frozen
first stage stays whole on every rank, as under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from hydra.utils import get_class
from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
from torch.distributed.fsdp.wrap import CustomPolicy

from ldmlab.utils.errors import FieldError


def shard_blocks(blocks: Sequence[str], sharding_strategy: str = "FULL_SHARD") -> CustomPolicy:
    """An FSDP auto-wrap policy: every module whose class is one of ``blocks`` (dotted class
    paths) becomes its own unit, sharded with ``sharding_strategy`` (a ``ShardingStrategy`` name)."""
    if sharding_strategy not in ShardingStrategy.__members__:
        raise FieldError("auto_wrap_policy", "sharding_strategy", f"is {sharding_strategy!r}, not one of "
                         f"{list(ShardingStrategy.__members__)}", "{key}=FULL_SHARD")
    classes = []
    for path in blocks:
        try:
            classes.append(get_class(path))
        except (ImportError, ValueError):
            raise FieldError("auto_wrap_policy", "blocks", f"names {path!r}, which is not a class",
                             "list block classes, e.g. ldmlab.backbones.dit.DiTBlock") from None
    unit = {"sharding_strategy": ShardingStrategy[sharding_strategy]}
    return CustomPolicy(lambda module: unit if isinstance(module, tuple(classes)) else False)


def fsdp_root(trainer: pl.Trainer | None) -> FullyShardedDataParallel | None:
    """The FSDP-wrapped model of ``trainer``'s strategy; None where it trains without FSDP."""
    model = getattr(getattr(trainer, "strategy", None), "model", None)
    return model if isinstance(model, FullyShardedDataParallel) else None


class ShardedClipping:
    """LightningModule mixin: ``trainer.gradient_clip_val`` (by norm) under FSDP, which Lightning's
    FSDP precision plugin refuses, clips with the root's ``clip_grad_norm_``: the norm over every
    rank's shards and the replicated parameters, as ``torch.nn.utils.clip_grad_norm_`` on one device."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        root = fsdp_root(self.trainer)
        if root is not None and gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            root.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

