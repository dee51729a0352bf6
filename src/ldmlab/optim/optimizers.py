"""Build an optimiser from its config partial; torch's own checks of its hyperparameters
("Invalid learning rate: -1") become one line naming the config key."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from functools import partial

from torch.optim import Optimizer

from ldmlab.utils.errors import ConfigError

log = logging.getLogger(__name__)

# torch.optim's "Invalid <what>: <value>" → (the hyperparameter, an example of a valid value)
_TORCH_CHECKS = {
    "learning rate": ("lr", None),  # None: the value's magnitude (a lost minus sign is the usual slip)
    "epsilon value": ("eps", "1e-08"),
    "beta parameter at index 0": ("betas", "[0.9,0.999]"),
    "beta parameter at index 1": ("betas", "[0.9,0.999]"),
    "weight_decay value": ("weight_decay", "0"),
    "momentum value": ("momentum", "0.9"),
}


def build_optimizer(factory: Callable[..., Optimizer], params: Iterable, key: str,
                    precision: str = "32-true") -> Optimizer:
    """``factory(params=params)``; a hyperparameter torch refuses raises ``ConfigError`` naming
    ``<key>.<hyperparameter>`` (``key``: the config node of ``factory``, e.g. ``module.optimizer``).

    Under Lightning's mixed ``precision`` (``bf16-mixed``, ``16-mixed``) a ``fused=True`` optimiser
    gets torch's default implementation instead (foreach on CUDA, per tensor on CPU): Lightning
    refuses to clip the gradients of optimisers that unscale internally, which fused ones declare."""
    if "mixed" in precision and isinstance(factory, partial) and factory.keywords.get("fused"):
        log.info("%s: fused=true is not clippable under %s in Lightning; using torch's default", key,
                 precision)
        keywords = factory.keywords | {"fused": None}
        factory = partial(factory.func, *factory.args, **keywords)
    try:
        return factory(params=params)
    except ValueError as err:
        match = re.fullmatch(r"Invalid (.+): (\S+)", str(err))
        if match is None or match.group(1) not in _TORCH_CHECKS:
            raise
        name, example = _TORCH_CHECKS[match.group(1)]
        if example is None:
            value = abs(float(match.group(2)))
            example = f"{value:g}" if math.isfinite(value) and value > 0 else "0.0001"
        raise ConfigError(f"{key}.{name}", f"torch.optim refuses {match.group(2)} ({err})",
                          f"e.g. {key}.{name}={example}") from None


def trainer_precision(module) -> str:
    """The precision of the Trainer ``module`` is attached to (``"32-true"`` when it is used alone)."""
    trainer = getattr(module, "_trainer", None)
    return str(trainer.precision) if trainer is not None else "32-true"


def optimizer_and_schedule(
    factory: Callable[..., Optimizer], params: Iterable, scheduler: Callable | None, total_steps: int,
    key: str, precision: str = "32-true",
) -> Optimizer | dict:
    """``build_optimizer``, and with a ``scheduler`` partial (called as ``scheduler(optimizer,
    total_steps=...)``, e.g. OneCycleLR) Lightning's dict stepping it every optimiser step."""
    optimizer = build_optimizer(factory, params, key, precision)
    if scheduler is None:
        return optimizer
    schedule = scheduler(optimizer, total_steps=max(total_steps, 1))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
