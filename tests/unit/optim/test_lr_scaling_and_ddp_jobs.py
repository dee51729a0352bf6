"""lr_scaling, the DDP strategy choice and the child-rank command of a multirun job."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from ldmlab.commands.train import ddp_strategy
from ldmlab.optim.lr_scaling import scale_learning_rates
from ldmlab.runs.ddp_jobs import job_command
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.finite import diverged


class _TwoOptimisers(nn.Module):
    optimizer_fields = ("optimizer", "disc_optimizer")

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 2)
        self.optimizer = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.0)
        self.disc_optimizer = partial(torch.optim.Adam, lr=4e-4)


@pytest.mark.parametrize(("rule", "factor", "scale"), [("none", 8, 1.0), ("linear", 8, 8.0),
                                                      ("sqrt", 4, 2.0), ("linear", 1, 1.0)])
def test_every_optimiser_lr_is_scaled_by_the_rule(rule, factor, scale):
    module = _TwoOptimisers()
    assert scale_learning_rates(module, rule, factor) == scale == module.lr_scale
    assert math.isclose(module.optimizer.keywords["lr"], 1e-3 * scale)
    assert math.isclose(module.disc_optimizer.keywords["lr"], 4e-4 * scale)
    assert module.optimizer.keywords["weight_decay"] == 0.0
    optimizer = module.optimizer(module.net.parameters())
    assert math.isclose(optimizer.param_groups[0]["lr"], 1e-3 * scale)


def test_a_divergence_fix_names_the_configured_lr_not_the_scaled_one():
    module = _TwoOptimisers()
    scale_learning_rates(module, "linear", 4)
    optimizers = [module.optimizer(module.net.parameters())]
    assert str(diverged(module, optimizers, 0, "boom")).endswith("e.g. module.optimizer.lr=0.0001")


def test_an_unknown_rule_names_the_key():
    with pytest.raises(ConfigError, match=r"^lr_scaling: unknown rule 'cubic'.*Fix: lr_scaling=none"):
        scale_learning_rates(_TwoOptimisers(), "cubic", 2)


def test_find_unused_parameters_only_for_modules_that_need_it():
    class Stage1(nn.Module):
        ddp_find_unused_parameters = True

    assert ddp_strategy("ddp", Stage1()) == "ddp_find_unused_parameters_true"
    assert ddp_strategy("ddp", nn.Linear(1, 1)) == "ddp"
    assert ddp_strategy("auto", Stage1()) == "auto"  # an explicit choice is kept


def test_a_multirun_jobs_children_run_that_job_alone():
    argv = ["/x/train.py", "--config-name", "train_ldm", "-m", "conditioner.p_uncond=0.1,0.2", "seed=1"]
    command = job_command(argv, ["conditioner.p_uncond=0.2", "seed=1"])
    assert command == ["/x/train.py", "--config-name", "train_ldm", "conditioner.p_uncond=0.2", "seed=1",
                       "hydra.mode=RUN"]  # also where the config itself sets hydra.mode: MULTIRUN
    assert job_command(["t.py", "--config-name=train_ae", "--multirun", "a=1,2"], ["a=2"]) == \
        ["t.py", "--config-name=train_ae", "a=2", "hydra.mode=RUN"]
