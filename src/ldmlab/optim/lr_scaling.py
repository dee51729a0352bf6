"""Learning-rate scaling with the effective batch, explicit: ``lr_scaling=none|linear|sqrt``.

The configured learning rates are for one process without gradient accumulation. With
``k = world size × trainer.accumulate_grad_batches`` processes' batches per optimiser step,
``linear`` multiplies every optimiser's lr by k (Goyal et al. 2017), ``sqrt`` by √k and
``none`` (the default) keeps it, so adding GPUs never changes the lr silently.
"""

from __future__ import annotations

import math
from functools import partial

from torch import nn

from ldmlab.utils.errors import ConfigError
from ldmlab.utils.finite import OPTIMIZER_FIELDS

RULES = {"none": lambda k: 1.0, "linear": float, "sqrt": math.sqrt}


def scale_learning_rates(module: nn.Module, rule: str, factor: int) -> float:
    """Multiply the ``lr`` of each optimiser partial the module names (``optimizer_fields``) by
    ``RULES[rule](factor)``; records and returns that multiplier as ``module.lr_scale``."""
    if rule not in RULES:
        raise ConfigError("lr_scaling", f"unknown rule {rule!r}, expected one of {', '.join(RULES)}",
                          "lr_scaling=none")
    scale = RULES[rule](factor)
    for name in getattr(module, "optimizer_fields", OPTIMIZER_FIELDS):
        factory = getattr(module, name, None)
        if scale != 1.0 and isinstance(factory, partial) and "lr" in factory.keywords:
            setattr(module, name, partial(factory.func, *factory.args,
                                          **(factory.keywords | {"lr": factory.keywords["lr"] * scale})))
    module.lr_scale = scale
    return scale
