"""trainer=fsdp composes with train_ldm into Lightning's FSDPStrategy: blocks FULL_SHARD, the
rest replicated, float32 weights under bf16 autocast, full checkpoints; its block list covers
every backbone's blocks. A strategy given as a config node passes the trainer check."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class, instantiate
from pytorch_lightning.strategies import FSDPStrategy
from torch.distributed.fsdp import MixedPrecision, ShardingStrategy
from torch.distributed.fsdp.wrap import CustomPolicy

from ldmlab.config.trainer_knobs import check_trainer
from tests.conftest import compose_config


def fsdp_config(*overrides: str):
    return compose_config("train_ldm", ["trainer=fsdp", "logger=none", "paths.output_dir=/tmp/x", *overrides])


def test_the_preset_builds_lightnings_fsdp_strategy():
    cfg = fsdp_config()
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.use_distributed_sampler is False
    strategy = instantiate(cfg.trainer.strategy)
    assert type(strategy) is FSDPStrategy
    assert strategy.sharding_strategy == ShardingStrategy.NO_SHARD  # the root; blocks: the policy's
    assert strategy._state_dict_type == "full" and strategy.kwargs["use_orig_params"] is True
    assert isinstance(strategy.kwargs["auto_wrap_policy"], CustomPolicy)
    assert cfg.trainer.strategy.auto_wrap_policy.sharding_strategy == "FULL_SHARD"
    assert strategy.mixed_precision_config == MixedPrecision()  # no FSDP casting: autocast only


@pytest.mark.parametrize(("backbone", "sharded"), [("small", 0.9), ("base", 0.95), ("dit", 0.9),
                                                   ("dit_xl", 0.99), ("uvit", 0.9)])
def test_the_blocks_hold_almost_every_backbone_parameter(backbone, sharded):
    cfg = fsdp_config(f"backbone={backbone}", *(["conditioner=class_vector"] if "dit" in backbone else []))
    blocks = tuple(get_class(path) for path in cfg.trainer.strategy.auto_wrap_policy.blocks)
    with torch.device("meta"):
        net = instantiate(cfg.backbone)
    inside = {id(p) for m in net.modules() if isinstance(m, blocks) for p in m.parameters()}
    total = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for p in net.parameters() if id(p) in inside) / total > sharded


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the preset builds")
def test_on_cpu_lightning_refuses_the_strategy_node_itself_not_its_form():
    cfg = fsdp_config("trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true")
    with pytest.raises(ValueError, match="The strategy `fsdp` requires a GPU accelerator"):
        check_trainer(cfg.trainer)


def test_a_strategy_node_passes_the_trainer_check():
    cfg = compose_config("train_ldm", ["trainer=ddp_cpu", "logger=none", "paths.output_dir=/tmp/x",
                                       "+trainer.strategy._target_=pytorch_lightning.strategies.DDPStrategy"])
    check_trainer(cfg.trainer)
