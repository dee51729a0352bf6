"""Guidance interval (Kynkäänniemi et al. 2024): the inner term applies only where σ̃ = σ/α is in
(sigma_low, sigma_high]; everywhere else the step is the plain conditional pass."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from ldmlab.guidance.autoguidance import Autoguidance
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.guidance.interval import IntervalGuidance
from ldmlab.guidance.none import NoGuidance
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import FieldError
from tests.conftest import compose_config
from tests.unit.guidance.tiny_ldm import FLOW, LABELS, batch_sizes, draw, tiny_ldm

SCALE, STEPS, INF = 3.0, 8, math.inf
PROCESSES = {"discrete": (), "flow": FLOW}


@pytest.fixture(scope="module", params=sorted(PROCESSES))
def module(request):
    return tiny_ldm(*PROCESSES[request.param])


def interval(low: float, high: float, scale: float = SCALE) -> IntervalGuidance:
    return IntervalGuidance(ClassifierFreeGuidance(scale), sigma_low=low, sigma_high=high)


def visited_sigma_tilde(module) -> list[float]:
    """σ̃ of the DDIM steps, in closed form: sqrt((1 − ᾱ_t)/ᾱ_t) on the discrete schedule's steps,
    t/(1 − t) on the flow grid (∞ at t = 1)."""
    schedule = module.schedule
    if schedule.continuous:
        return [t / (1.0 - t) if t < 1.0 else INF for t in schedule.grid(STEPS)[:-1].tolist()]
    alpha_bar = schedule.alphas_cumprod.double()[DDIMSampler(STEPS).timesteps(schedule.num_timesteps)]
    return ((1.0 - alpha_bar) / alpha_bar).sqrt().tolist()


def test_the_whole_range_is_plain_cfg_bit_for_bit(module):
    cfg = draw(module, module.prepare_guidance(ClassifierFreeGuidance(SCALE)), STEPS)
    assert (cfg - draw(module, None, STEPS)).abs().max() > 0.1  # guidance changes the sample: a real check
    assert torch.equal(draw(module, module.prepare_guidance(interval(0.0, INF)), STEPS), cfg)
    assert torch.equal(draw(module, module.prepare_guidance(interval(0.0, None)), STEPS), cfg)  # None: +∞


def test_the_config_writes_an_unbounded_interval_as_null():
    cfg = compose_config("sample", ["guidance=interval", "guidance.sigma_low=0", "guidance.sigma_high=null"])
    assert instantiate(cfg.guidance).sigma_high == INF


@pytest.mark.parametrize(("low", "high"), [(1.0, 1.0), (0.0, 0.0)])
def test_an_empty_interval_is_the_unguided_sample_bit_for_bit(module, low, high):
    plain = draw(module, None, STEPS)
    assert torch.equal(draw(module, module.prepare_guidance(interval(low, high)), STEPS), plain)
    assert torch.equal(draw(module, module.prepare_guidance(ClassifierFreeGuidance(1.0)), STEPS), plain)


def test_the_batched_pass_runs_exactly_at_the_steps_inside(module):
    low, high = 0.28, 5.42  # the paper's EDM2 interval
    sigmas = visited_sigma_tilde(module)
    inside = [low < s <= high for s in sigmas]
    assert any(inside) and not all(inside)  # a real partial interval on both processes
    with batch_sizes(module.ema.shadow["backbone"]) as (sizes,):
        draw(module, module.prepare_guidance(interval(low, high)), STEPS)
    n = len(LABELS)
    assert sizes == [2 * n if i else n for i in inside]


def test_the_sample_is_cfg_inside_and_unguided_outside(module):
    """Guided only at the first (noisiest) step: differs from both the unguided and the CFG sample."""
    first, second = visited_sigma_tilde(module)[:2]
    guided = draw(module, module.prepare_guidance(interval(second, first)), STEPS)
    plain = draw(module, None, STEPS)
    cfg = draw(module, module.prepare_guidance(ClassifierFreeGuidance(SCALE)), STEPS)
    assert (guided - plain).abs().max() > 1e-3 and (guided - cfg).abs().max() > 1e-3


def test_it_wraps_autoguidance(module):
    weak = tiny_ldm(*PROCESSES["flow" if module.schedule.continuous else "discrete"], seed=1)
    auto = Autoguidance(2.0, guide=weak)
    everywhere = IntervalGuidance(auto, sigma_low=0.0, sigma_high=INF)
    assert torch.equal(draw(module, module.prepare_guidance(everywhere), STEPS),
                       draw(module, module.prepare_guidance(auto), STEPS))
    low, high = 0.28, 5.42
    inside = [low < s <= high for s in visited_sigma_tilde(module)]
    with batch_sizes(module.ema.shadow["backbone"], weak.ema.shadow["backbone"]) as (strong, guide):
        draw(module, module.prepare_guidance(IntervalGuidance(auto, sigma_low=low, sigma_high=high)), STEPS)
    n = len(LABELS)
    assert strong == [n] * STEPS and guide == [n] * sum(inside)


def test_scale_and_sweeps_turn_the_inner_term():
    guidance = interval(0.5, 2.0, scale=2.0)
    assert guidance.name == "interval" and guidance.scale == 2.0 and guidance.swept is guidance.inner
    turned = guidance.with_scale(4.0)
    assert turned.scale == 4.0 and turned.inner.scale == 4.0 and guidance.scale == 2.0
    assert (turned.sigma_low, turned.sigma_high) == (0.5, 2.0)
    moved = guidance.with_settings(sigma_low=0.1, sigma_high=INF)
    assert (moved.sigma_low, moved.sigma_high, moved.scale) == (0.1, INF, 2.0)
    assert (guidance.sigma_low, guidance.sigma_high) == (0.5, 2.0)
    assert isinstance(IntervalGuidance().inner, ClassifierFreeGuidance)
    assert (IntervalGuidance().sigma_low, IntervalGuidance().sigma_high) == (0.28, 5.42)


@pytest.mark.parametrize(("bounds", "field"), [
    ({"sigma_low": -0.1}, "sigma_low"), ({"sigma_low": math.nan}, "sigma_low"),
    ({"sigma_low": INF}, "sigma_low"),
    ({"sigma_low": 2.0, "sigma_high": 1.0}, "sigma_high"), ({"sigma_high": math.nan}, "sigma_high"),
    ({"sigma_high": "5"}, "sigma_high"),
])
def test_bad_bounds_are_refused(bounds, field):
    with pytest.raises(FieldError, match=rf"^guidance\.{field}: ") as err:
        IntervalGuidance(ClassifierFreeGuidance(2.0), **bounds)
    assert "\n" not in str(err.value)
    with pytest.raises(FieldError, match=rf"^guidance\.{field}: "):
        interval(0.28, 5.42).with_settings(**bounds)


def test_other_settings_and_unprepared_use_are_refused():
    with pytest.raises(FieldError, match=r"^guidance\.scale: "):
        interval(0.28, 5.42).with_settings(scale=2.0)
    with pytest.raises(FieldError, match=r"^guidance\.inner: "):
        IntervalGuidance(NoGuidance())
    with pytest.raises(RuntimeError, match="prepare"):
        interval(0.28, 5.42).active_at(500)
