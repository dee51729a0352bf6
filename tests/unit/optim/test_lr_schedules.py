"""LR multipliers: warm-up and the cosine decay, against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from ldmlab.models.autoencoder import AutoencoderModule
from ldmlab.optim.lr_schedules import linear_warmup, warmup_cosine
from ldmlab.utils.errors import ConfigError


def _multipliers(scheduler, steps: int) -> list[float]:
    base = scheduler.base_lrs[0]
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"] / base)
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)


def test_linear_warmup_reaches_one_and_stays():
    assert _multipliers(linear_warmup(_optimizer(), 4), 7) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1])


def test_warmup_cosine_matches_the_closed_form():
    warmup, total, final = 4, 14, 0.1
    got = _multipliers(warmup_cosine(_optimizer(), warmup, total, final), 18)
    assert got[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    for step in range(warmup, 18):
        progress = min(1.0, (step - warmup) / (total - warmup))
        assert got[step] == pytest.approx(final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))
    assert got[9] == pytest.approx((1 + final) / 2)  # half-way down the cosine
    assert got[-1] == pytest.approx(final) and got[14] == pytest.approx(final)


@pytest.mark.parametrize(("key", "kwargs"), [("module.lr_decay", {"lr_decay": "step"}),
                                             ("module.final_lr_ratio", {"final_lr_ratio": 2.0})])
def test_bad_lr_decay_settings_name_the_key(key, kwargs):
    with pytest.raises(ConfigError, match=key):
        AutoencoderModule(None, None, None, None, **kwargs)
