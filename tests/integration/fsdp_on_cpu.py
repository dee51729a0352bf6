"""Lightning's FSDPStrategy, made to run on CPU ranks for the tests (``trainer=fsdp`` is for GPUs).

Lightning 2.6 refuses FSDP on CPU twice: its accelerator connector (``The strategy `fsdp` requires
a GPU accelerator, but received `accelerator='cpu'```, checked for the exact class only), and it
hands torch's FSDP ``device_id=root_device.index`` (None on CPU), which torch refuses with ``FSDP
needs a non-CPU accelerator device, but no accelerator device is detected``. torch's FSDP itself
runs on CPU with gloo given ``device_id=cpu``. This subclass differs from FSDPStrategy in two
methods only:

- ``_setup_model``: wraps with ``device_id=torch.device("cpu")``;
- ``optimizer_state``: gathers the full optimizer state with ``offload_to_cpu=False``. torch's
  gather (``_allgather_orig_param_states``) reuses one buffer for every state of a sharded unit and
  "offloads" each state with ``.cpu()``: a copy from a GPU, a no-op on CPU tensors, so there every
  ``exp_avg`` would come out as the ``exp_avg_sq`` gathered after it. Without offloading, torch
  clones each state instead: what the offload's copy gives on a GPU.
"""

from __future__ import annotations

import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.strategies import FSDPStrategy
from torch.distributed.fsdp import (
    FullOptimStateDictConfig,
    FullStateDictConfig,
    OptimStateKeyType,
    StateDictType,
)
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP


class CPUFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` on CPU ranks (gloo); the ``state_dict_type="full"`` checkpoints only."""

    def _setup_model(self, model: torch.nn.Module) -> FSDP:
        return FSDP(module=model, cpu_offload=self.cpu_offload, mixed_precision=self.mixed_precision_config,
                    sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"), **self.kwargs)

    def optimizer_state(self, optimizer) -> dict:
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        full = StateDictType.FULL_STATE_DICT
        with FSDP.state_dict_type(self.model, full, FullStateDictConfig(rank0_only=True),
                                  FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True)):
            state = FSDP.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:  # the standard layout, as Lightning's full checkpoints store it
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
        return state
