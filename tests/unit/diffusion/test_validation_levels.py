"""Validation loss per noise-level bucket: the buckets' edges and centres, the loss at a bucket's
level against the regression written out by hand, and its logging by the module (deterministic,
the same after a checkpoint round trip, off at 0, ``val/loss`` untouched)."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch

from ldmlab.diffusion.schedules.edm import EDMSchedule
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.diffusion.validation_levels import bucket_losses, level_buckets
from ldmlab.utils.errors import FieldError
from ldmlab.utils.seeded import seeded_validation
from tests.unit.guidance.tiny_ldm import LABELS, tiny_ldm

SEED = 5


@contextmanager
def seeded():
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        yield


def test_discrete_buckets_split_the_trained_steps_without_overlap():
    schedule = ScaledLinearSchedule(num_timesteps=10)
    buckets = level_buckets(schedule, 3, horizon=10)
    assert [(b.low, b.high, b.level) for b in buckets] == [(0, 3, 1), (3, 6, 4), (6, 10, 8)]
    assert [b.name for b in buckets] == ["loss_t0_3", "loss_t3_6", "loss_t6_10"]
    assert buckets[2].levels(2, torch.device("cpu")).tolist() == [8, 8]
    assert buckets[2].levels(2, torch.device("cpu")).dtype == torch.long
    truncated = level_buckets(schedule, 2, horizon=6)  # ES-DDPM: only t < T' = 6 trained
    assert [(b.low, b.high, b.level) for b in truncated] == [(0, 3, 1), (3, 6, 4)]
    assert level_buckets(schedule, 0, horizon=10) == ()
    with pytest.raises(FieldError, match=r"^module\.val_t_buckets: 11 buckets of the 10 trained steps"):
        level_buckets(schedule, 11, horizon=10)
    with pytest.raises(FieldError, match=r"^module\.val_t_buckets: must be an int >= 0"):
        level_buckets(schedule, -1, horizon=10)


def test_continuous_buckets_split_the_unit_time_at_the_process_levels():
    flow = level_buckets(FlowSchedule(), 4, horizon=None)
    assert [(b.low, b.high, b.level) for b in flow] == [
        (0.0, 0.25, 0.125), (0.25, 0.5, 0.375), (0.5, 0.75, 0.625), (0.75, 1.0, 0.875)]
    assert [b.name for b in flow] == ["loss_t0_0.25", "loss_t0.25_0.5", "loss_t0.5_0.75", "loss_t0.75_1"]
    shifted = level_buckets(FlowSchedule(shift=3.0), 2, horizon=None)  # t = 3u/(1 + 2u)
    assert [(b.low, b.high) for b in shifted] == [(0.0, 0.75), (0.75, 1.0)]
    assert shifted[0].level == pytest.approx(0.75 / 1.5) and shifted[1].level == pytest.approx(2.25 / 2.5)
    edm = level_buckets(EDMSchedule(), 4, horizon=None)  # σ on EDM's ρ = 7 curve from σ_min to σ_max
    assert edm[0].low == pytest.approx(0.002) and edm[-1].high == pytest.approx(80.0)
    rho = [0.002 ** (1 / 7) + u * (80 ** (1 / 7) - 0.002 ** (1 / 7)) for u in (0.125, 0.375, 0.625, 0.875)]
    for bucket, root in zip(edm, rho, strict=True):
        assert bucket.level == pytest.approx(root**7) and bucket.low < bucket.level < bucket.high
    assert all(a.high == b.low for a, b in zip(edm[:-1], edm[1:], strict=True))
    assert edm[0].name == f"loss_t0.002_{edm[0].high:.3g}" and edm[0].levels(3, torch.device("cpu")).dtype \
        == torch.float32


def _by_hand(module, x0: torch.Tensor, level: float, kind: str) -> torch.Tensor:
    """The regression at one level, each coefficient written out (uniform weights, l2)."""
    net = module.ema.shadow
    cond = net["conditioner"]({"label": LABELS})
    with seeded():
        noise = torch.randn_like(x0)
    t = torch.full((len(x0),), level)
    if kind in ("eps", "v"):
        t = t.long()
        alpha_bar = module.schedule.alphas_cumprod[int(level)]
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        output = net["backbone"](a * x0 + s * noise, t, cond)
        target = noise if kind == "eps" else a * noise - s * x0
    elif kind == "flow":
        output = net["backbone"]((1 - level) * x0 + level * noise, 1000.0 * t, cond)
        target = noise - x0
    else:  # EDM, σ_d = 1: c_in = 1/sqrt(σ² + 1), c_skip = 1/(σ² + 1), c_out = σ/sqrt(σ² + 1)
        x = x0 + level * noise
        norm = math.sqrt(level**2 + 1)
        output = net["backbone"](x / norm, torch.full_like(t, math.log(level) / 4), cond)
        target = (x0 - x / norm**2) / (level / norm)
    return (output - target).square().mean()


@pytest.mark.parametrize(("kind", "overrides"), [
    ("eps", ()), ("v", ("diffusion/parameterization=v",)), ("flow", ("diffusion/objective=flow",)),
    ("edm", ("diffusion/objective=edm",))])
def test_bucket_loss_is_the_regression_at_the_bucket_level(kind, overrides):
    module = tiny_ldm(*overrides, "module.val_t_buckets=3")
    x0 = torch.randn(len(LABELS), 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        losses = bucket_losses(module.objective, module.ema.shadow, x0, {"label": LABELS}, module.schedule,
                               module.val_buckets, seeded)
        assert list(losses) == [b.name for b in module.val_buckets] and len(losses) == 3
        for bucket in module.val_buckets:
            expected = _by_hand(module, x0, bucket.level, kind)
            torch.testing.assert_close(losses[bucket.name], expected, rtol=1e-5, atol=0)
    values = [float(v) for v in losses.values()]
    assert len(set(values)) == 3  # each bucket at its own level


def _validation_logs(module, batch, batch_idx=0) -> dict[str, float]:
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    with torch.no_grad():
        module.validation_step(batch, batch_idx)
    return logged


def test_module_logs_each_bucket_identically_across_passes_and_checkpoints():
    module = tiny_ldm("module.val_t_buckets=4")
    batch = {"image": torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)), "label": LABELS}
    logs = _validation_logs(module, batch, batch_idx=3)
    assert list(logs) == ["val/loss", "val/loss_t0_250", "val/loss_t250_500", "val/loss_t500_750",
                          "val/loss_t750_1000"]
    with seeded_validation(module, 3), torch.no_grad():  # val/loss: the drawn-levels loss as before
        assert logs["val/loss"] == float(module.diffusion_loss(batch, module.ema.shadow))
    torch.manual_seed(123)  # the global RNG does not matter
    assert _validation_logs(module, batch, batch_idx=3) == logs
    restored = tiny_ldm("module.val_t_buckets=4", seed=9)  # other weights, then the checkpoint's
    restored.load_state_dict(module.state_dict())
    assert _validation_logs(restored, batch, batch_idx=3) == logs
    assert _validation_logs(module, batch, batch_idx=4) != logs  # another batch: other noise
    off = tiny_ldm("module.val_t_buckets=0")
    off.load_state_dict(module.state_dict())
    assert _validation_logs(off, batch, batch_idx=3) == {"val/loss": logs["val/loss"]}
