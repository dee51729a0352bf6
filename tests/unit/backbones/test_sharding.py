"""FSDP as trainer=fsdp lays stage 2 out (``shard_blocks``), on 2 gloo ranks on CPU with torch's
FSDP: only the denoiser's blocks become sharded units; gradients, the FSDP clip and the EMA update
over shards equal their unsharded reference; the NaN scan reads each rank's own shards only."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.fsdp import FullStateDictConfig, ShardingStrategy, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from ldmlab.backbones.sharding import shard_blocks
from ldmlab.backbones.unet import UNetStage
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.optim.ema import EMA
from ldmlab.utils.errors import FieldError
from ldmlab.utils.finite import nonfinite_state
from tests.unit.backbones.test_unet import perturb_, tiny_unet

BLOCKS = ["ldmlab.backbones.unet.UNetStage", "ldmlab.backbones.dit.DiTBlock"]
WORLD, CLIP = 2, 0.05


class Stage2(nn.Module):
    """The layout of the LDM module: a frozen first stage (with ResnetBlocks), the trained model
    and its EMA copy; ``forward`` is a training step's loss."""

    def __init__(self) -> None:
        super().__init__()
        self.first_stage = nn.Sequential(ResnetBlock(3, 3)).requires_grad_(False)
        backbone = tiny_unet(context_dim=12, attention_resolutions=[1, 2])
        perturb_(backbone)
        self.model = nn.ModuleDict({"backbone": backbone})
        self.ema = EMA(self.model, decay=0.5, warmup=0)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.model["backbone"](self.first_stage(x), t, {"crossattn": context}).square().mean()


def batch(rank: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(rank)
    return torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 1000, (2,), generator=g), \
        torch.randn(2, 4, 12, generator=g)


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    reference = Stage2()
    root = FSDP(copy.deepcopy(reference), auto_wrap_policy=shard_blocks(BLOCKS), use_orig_params=True,
                sharding_strategy=ShardingStrategy.NO_SHARD, device_id=torch.device("cpu"))
    inner = root.module
    units = [n for n, m in inner.named_modules() if isinstance(m, FSDP)]
    wrapped = {type(m.module).__name__ for m in inner.modules() if isinstance(m, FSDP)}

    root(*batch(rank)).backward()  # gradients averaged over the ranks' batches
    sum(reference(*batch(r)) for r in range(WORLD)).div(WORLD).backward()
    norm = float(root.clip_grad_norm_(CLIP))
    ref_norm = float(torch.nn.utils.clip_grad_norm_(reference.model.parameters(), CLIP))
    for net in (inner, reference):
        torch.optim.SGD(net.model.parameters(), lr=1.0).step()
        net.ema.update(net.model)  # under FSDP: shard against shard

    with FSDP.state_dict_type(root, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=False)):
        full = root.state_dict()
    expected = reference.state_dict()
    diffs = {k: (full[k].double() - v.double()).abs().max().item() for k, v in expected.items()
             if v.is_floating_point()}
    moved = (expected["ema.shadow.backbone.middle.0.conv1.weight"]
             - Stage2().state_dict()["ema.shadow.backbone.middle.0.conv1.weight"]).abs().max().item()

    opt = torch.optim.SGD(inner.model.parameters(), lr=1.0)
    poisoned = None
    if rank == 1:  # NaN into this rank's shard only
        name, param = next((n, p) for n, p in inner.model.named_parameters()
                           if "_fsdp_wrapped_module" in n and p.numel())
        with torch.no_grad():
            param[0] = float("nan")
        poisoned = "model." + name.replace("_fsdp_wrapped_module.", "")
    found = nonfinite_state(inner, [opt])
    result = {"units": units, "wrapped": sorted(wrapped), "norm": [norm, ref_norm], "diffs": diffs,
              "keys": sorted(full) == sorted(expected), "moved": moved, "poisoned": poisoned,
              "found": found and found[1], "state_keys": sorted(expected)}
    Path(f"{tmp}/rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("fsdp")
    mp.start_processes(_worker, args=(str(tmp),), nprocs=WORLD, start_method="fork")
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_only_the_denoisers_blocks_are_units_in_the_model_and_its_ema(ranks):
    stages = sum(isinstance(m, UNetStage) for m in Stage2().model.modules())
    units = ranks[0]["units"]
    assert ranks[0]["wrapped"] == ["UNetStage"] and len(units) == 2 * stages
    assert sum(u.startswith("model.backbone.") for u in units) == stages
    assert sum(u.startswith("ema.shadow.backbone.") for u in units) == stages
    assert not any(u.startswith("first_stage") for u in units)


def test_gradients_clip_and_ema_over_shards_equal_the_unsharded_run(ranks):
    for result in ranks:
        assert result["keys"]
        assert result["norm"][0] == pytest.approx(result["norm"][1], rel=1e-6)
        assert result["norm"][1] > 10 * CLIP  # the clip acted
        worst = max(result["diffs"].values())
        assert worst < 1e-6, sorted(result["diffs"].items(), key=lambda kv: -kv[1])[:3]
    assert ranks[0]["moved"] > 1e-3  # the EMA moved: its equality is not the initial copy's


def test_the_nan_scan_reads_each_ranks_own_shards(ranks):
    poisoned = ranks[1]["poisoned"]
    assert poisoned in ranks[1]["state_keys"]  # named as in the state_dict, without FSDP's prefix
    assert ranks[1]["found"] == [poisoned]
    assert ranks[0]["found"] is None  # no gather: rank 0 holds no NaN (the trainer reduces over ranks)


def test_policy_refuses_what_is_not_a_block_class():
    with pytest.raises(FieldError, match=r"trainer\.strategy\.auto_wrap_policy\.blocks: names 'ldmlab\.nope"):
        shard_blocks(["ldmlab.nope.Block"])
    with pytest.raises(FieldError, match="sharding_strategy"):
        shard_blocks(BLOCKS, "HALF_SHARD")
