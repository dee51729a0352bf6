"""Find NaN/Inf in a training state cheaply and name the learning rate to lower.

A module names the field of each of its optimisers, in ``configure_optimizers`` order, as
``optimizer_fields`` (default: ``("optimizer",)``); errors name it as the ``module`` part's field,
and the module's attribute of that name holds the optimiser's partial, whose ``lr`` the suggested
fix divides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.distributed.fsdp import FullyShardedDataParallel

from ldmlab.utils.errors import DivergedError, part_key

OPTIMIZER_FIELDS = ("optimizer",)
FSDP_PREFIX = "_fsdp_wrapped_module"  # inserted into the names of FSDP-wrapped submodules


def nonfinite(tensors: Sequence[Tensor]) -> list[bool]:
    """Which of the floating ``tensors`` hold a NaN or Inf: one fused max-abs pass, one host sync."""
    if not tensors:
        return []
    norms = torch._foreach_norm([t.detach() for t in tensors], ord=math.inf)
    return (~torch.stack([n.to(norms[0].device, torch.float32) for n in norms]).isfinite()).tolist()


def _owners(module: nn.Module, optimizers: Sequence) -> tuple[dict[int, int], dict[str, set[int]]]:
    """Optimiser index by parameter id, and the indices training each submodule path."""
    by_param = {id(p): i for i, opt in enumerate(optimizers) for g in opt.param_groups for p in g["params"]}
    by_path: dict[str, set[int]] = {}
    for name, param in module.named_parameters():
        while id(param) in by_param and "." in name:
            name = name.rpartition(".")[0]
            by_path.setdefault(name, set()).add(by_param[id(param)])
    return by_param, by_path


def _owner_by_path(name: str, by_path: dict[str, set[int]]) -> int:
    """A buffer's optimiser: the one training the parameters of its nearest submodule (else 0)."""
    while "." in name:
        name = name.rpartition(".")[0]
        if name in by_path:
            return next(iter(by_path[name])) if len(by_path[name]) == 1 else 0
    return 0


def _state(module: nn.Module) -> list[tuple[str, Tensor]]:
    """``module.state_dict(keep_vars=True)``'s items; under FSDP this rank's own tensors (its
    shards and the replicated ones: a state_dict would all-gather every shard onto every rank,
    a collective), the wrapper's ``_fsdp_wrapped_module.`` left out of their names."""
    if not any(isinstance(m, FullyShardedDataParallel) for m in module.modules()):
        return list(module.state_dict(keep_vars=True).items())
    local = [*module.named_parameters(), *module.named_buffers()]
    return [(name.replace(f"{FSDP_PREFIX}.", ""), tensor) for name, tensor in local]


def nonfinite_state(
    module: nn.Module, optimizers: Sequence, metrics: Mapping[str, Tensor | float] | None = None
) -> tuple[int, list[str]] | None:
    """None if every floating tensor of ``module.state_dict()`` (parameters, buffers, EMA; under
    FSDP this rank's shards: the caller reduces over ranks), of the optimisers' states and
    ``metrics`` is finite; else (index of the optimiser to blame, names of the non-finite
    tensors). The first non-finite tensor in that order decides the blame."""
    by_param, by_path = _owners(module, optimizers)
    names, tensors, owners = [], [], []

    def add(name: str, tensor, owner: int) -> None:
        if torch.is_tensor(tensor) and tensor.is_floating_point() and tensor.numel():
            names.append(name), tensors.append(tensor), owners.append(owner)

    for name, tensor in _state(module):
        add(name, tensor, by_param.get(id(tensor), _owner_by_path(name, by_path)))
    param_names = {id(p): n for n, p in module.named_parameters()}
    for index, optimizer in enumerate(optimizers):
        for param, state in optimizer.state.items():
            for key, tensor in state.items():
                add(f"optimizer {index} state {key} of {param_names.get(id(param), '?')}", tensor, index)
    for name, value in (metrics or {}).items():
        add(name, torch.as_tensor(value, dtype=torch.float32), 0)
    bad = [i for i, is_bad in enumerate(nonfinite(tensors)) if is_bad]
    return (owners[bad[0]], [names[i] for i in bad]) if bad else None


def describe(names: Sequence[str]) -> str:
    shown = ", ".join(names[:2]) + (f", … ({len(names)} in all)" if len(names) > 2 else "")
    return f"NaN/Inf in {shown}"


def diverged(module: nn.Module, optimizers: Sequence, index: int, problem: str) -> DivergedError:
    """The error naming the learning rate of optimiser ``index``, with a tenfold lower value."""
    field = getattr(module, "optimizer_fields", OPTIMIZER_FIELDS)[index]
    factory = getattr(module, field, None)
    group = optimizers[index].param_groups[0] if index < len(optimizers) else {}
    lr = group.get("initial_lr", group.get("lr"))
    if isinstance(factory, partial):  # the configured value (schedulers may start elsewhere)
        lr = factory.keywords.get("lr", lr) / getattr(module, "lr_scale", 1.0)  # before lr_scaling
    key = part_key("module", f"{field}.lr")
    fix = f"lower it, e.g. {key}={lr / 10:g}" if isinstance(lr, float | int) else f"lower {key}"
    return DivergedError(key, problem, fix)


def ensure_finite(loss: Tensor, name: str, step: int, module: nn.Module, optimizers: Sequence) -> None:
    """Raise ``DivergedError`` if ``loss`` is NaN/Inf (before its backward pass), blaming the
    optimiser whose state already went non-finite, else the first one."""
    if not bool(torch.isfinite(loss).all()):
        raise loss_diverged(module, optimizers, f"training diverged: {name} is {loss.item()} at step {step}")


def loss_diverged(module: nn.Module, optimizers: Sequence, problem: str) -> DivergedError:
    """``diverged`` for a non-finite loss: blames the optimiser whose state already went
    non-finite (named in the message), else the first one."""
    found = nonfinite_state(module, optimizers)
    if found is not None:
        problem += f" ({describe(found[1])})"
    return diverged(module, optimizers, found[0] if found else 0, problem)


class LossWatch:
    """``ensure_finite`` without a host sync per step, for single-optimiser modules.

    ``observe(loss, module)`` keeps, on the loss's device, the first step whose loss was NaN/Inf
    and that value; every ``trainer.log_every_n_steps`` steps (when the loss is logged anyway)
    and at ``check`` it is read back once and a ``DivergedError`` raised. Checkpoints stay safe
    in between: ``AtomicModelCheckpoint`` scans the whole state before every save.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._step: Tensor | None = None
        self._value: Tensor | None = None

    def observe(self, loss: Tensor, module) -> None:
        loss = loss.detach().float()
        if self._step is None or self._step.device != loss.device:
            self._step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._value = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self._step < 0)
        self._step = torch.where(first, module.global_step, self._step)
        self._value = torch.where(first, loss, self._value)
        if (module.global_step + 1) % max(1, module.trainer.log_every_n_steps) == 0:
            self.check(module, module.trainer.optimizers)

    def check(self, module: nn.Module, optimizers: Sequence) -> None:
        """Raise ``DivergedError`` if a NaN/Inf loss was observed (one host sync)."""
        if self._step is None or int(self._step) < 0:
            return
        raise loss_diverged(module, optimizers, f"training diverged: {self.name} is {float(self._value)} "
                            f"at step {int(self._step)}")
