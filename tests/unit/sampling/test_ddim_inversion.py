"""DDIM inversion, checked on Gaussian data with its exact denoiser, in float64.

For x0 ~ N(μ, s²) elementwise, ε̂(x_t, t) = sqrt(1 − ᾱ)(x_t − sqrt(ᾱ)μ)/V with
V = ᾱs² + 1 − ᾱ, and x0̂ = (x_t − sqrt(1 − ᾱ)ε̂)/sqrt(ᾱ), are a perfect denoiser. ᾱ is read
from the schedule's table exactly as ``Sampler.transitions`` reads it (float32 widened to
float64), so the sampler and the denoiser agree to the last bit.
"""

import math

import pytest
import torch

from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.diffusion.schedules.edm import EDMSchedule
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.sampling.inversion import ddim_invert
from ldmlab.sampling.samplers.base import DenoiseFn
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.sampling.samplers.ddpm import DDPMSampler
from ldmlab.utils.errors import ConfigError

MU, S = 0.3, 0.5
SHAPE = (64, 2, 4, 4)
SCHEDULE = ScaledLinearSchedule()
EXACT_ITERS = 20


def gaussian_denoiser(schedule: NoiseSchedule) -> DenoiseFn:
    table = schedule.alphas_cumprod.double()

    def denoise(x_t: torch.Tensor, t: torch.Tensor, level=None):
        ab = table[t].view(-1, *[1] * (x_t.ndim - 1)).to(x_t)
        signal, noise = ab.sqrt(), (1 - ab).sqrt()
        eps = noise * (x_t - signal * MU) / (ab * S**2 + 1 - ab)
        return (x_t - noise * eps) / signal, eps

    return denoise


DENOISE = gaussian_denoiser(SCHEDULE)


def gaussian_data(shape=SHAPE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return MU + S * torch.randn(shape, generator=generator, dtype=torch.float64)


def round_trip_error(sampler: DDIMSampler, iters: int, horizon: int | None = None) -> float:
    x0 = gaussian_data()
    x_t = ddim_invert(sampler, DENOISE, x0, SCHEDULE, horizon=horizon, fixed_point_iters=iters)
    return (sampler.sample(DENOISE, x_t, SCHEDULE, horizon=horizon) - x0).abs().max().item()


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("steps", [10, 50])
def test_fixed_point_inversion_round_trips_to_float_precision(steps: int, spacing: str):
    """Measured max errors: 3.6e-10 (10 trailing), 6.7e-11 (10 leading), ~2e-15 (50 steps)."""
    sampler = DDIMSampler(steps, spacing)
    assert round_trip_error(sampler, EXACT_ITERS) < 1e-6


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_plain_inversion_is_first_order_and_the_refinement_matters(spacing: str):
    """Plain inversion's error shrinks ≈ 1/steps (measured trailing 0.79, 0.21, 0.038 at 5, 20,
    100 steps), far above the refined error; a step that left x unchanged would stay ≈ 1."""
    errors = {steps: round_trip_error(DDIMSampler(steps, spacing), 0) for steps in (5, 20, 100)}
    assert errors[100] < errors[20] < errors[5]
    assert errors[100] < 0.1
    assert errors[20] > 1e4 * round_trip_error(DDIMSampler(20, spacing), EXACT_ITERS)


def test_one_step_inversion_follows_the_documented_updates():
    """One level (t = 199), where the cleaner point is x0 itself (ᾱ_p = 1): the plain step
    sqrt(ᾱ)x0 + sqrt(1 − ᾱ)ε̂(x0, t), then x ← x + sqrt(ᾱ)(x0 − x0̂(x, t)) per refinement."""
    sampler, x0 = DDIMSampler(1), gaussian_data()
    t = torch.full((SHAPE[0],), 199)
    ab = sampler.transitions(SCHEDULE, horizon=200)[0].alpha_bar
    expected = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * DENOISE(x0, t)[1]
    for iters in range(3):
        got = ddim_invert(sampler, DENOISE, x0, SCHEDULE, horizon=200, fixed_point_iters=iters)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
        expected = expected + math.sqrt(ab) * (x0 - DENOISE(expected, t)[0])


def ddim_gain(sampler: DDIMSampler) -> float:
    """G with x0 − μ = G·(x_T − sqrt(ᾱ_T)μ) along the exact-denoiser DDIM walk: the step from ᾱ
    to ᾱ_p multiplies x − sqrt(ᾱ)μ by (sqrt(ᾱᾱ_p)s² + sqrt((1 − ᾱ)(1 − ᾱ_p)))/V, because
    x0̂ − μ and ε̂ are sqrt(ᾱ)s²/V and sqrt(1 − ᾱ)/V times it."""
    gain = 1.0
    for tr in sampler.transitions(SCHEDULE):
        ab, ab_prev = tr.alpha_bar, tr.alpha_bar_prev
        gain *= (math.sqrt(ab * ab_prev) * S**2 + math.sqrt((1 - ab) * (1 - ab_prev))) / (ab * S**2 + 1 - ab)
    return gain


@pytest.mark.parametrize("steps", [20, 100])
def test_inverted_gaussian_data_matches_the_closed_form_and_the_forward_marginal(steps: int):
    """x_T = sqrt(ᾱ_T)μ + (x0 − μ)/G elementwise (measured max error 1.5e-8 at 20 steps with
    10 iterations, 1e-14 at 100). Discrete DDIM contracts the variance, so x_T's variance is
    q(x_T)'s V_T = ᾱ_T s² + 1 − ᾱ_T times E = s²/(G²V_T) > 1 (1.33 at 20 steps, 1.07 at 100),
    and E → 1 as steps grow: x_T is then roughly distributed as q(x_T)."""
    sampler = DDIMSampler(steps)
    x0 = gaussian_data((1536, 1, 4, 4), seed=1)
    x_t = ddim_invert(sampler, DENOISE, x0, SCHEDULE, fixed_point_iters=10)
    ab, gain = sampler.transitions(SCHEDULE)[0].alpha_bar, ddim_gain(sampler)
    closed_form = math.sqrt(ab) * MU + (x0 - MU) / gain
    assert (x_t - closed_form).abs().max().item() < 1e-6

    variance = ab * S**2 + 1 - ab
    expansion = S**2 / (gain**2 * variance)
    var_se = math.sqrt(2 / x0.numel())  # 0.9 %
    assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * MU, abs=5 * math.sqrt(variance / x0.numel()))
    assert x_t.var().item() == pytest.approx(variance * expansion, rel=5 * var_se)
    assert 1.0 < expansion < (1.5 if steps == 20 else 1.1)
    if steps == 100:
        assert x_t.var().item() == pytest.approx(variance, rel=0.1 + 5 * var_se)


def test_horizon_only_visits_levels_below_it_and_round_trips():
    seen: list[int] = []

    def recording(x_t: torch.Tensor, t: torch.Tensor, level=None):
        seen.extend(t.unique().tolist())
        return DENOISE(x_t, t)

    sampler, horizon = DDIMSampler(10), 600
    x0 = gaussian_data()
    x_t = ddim_invert(sampler, recording, x0, SCHEDULE, horizon=horizon, fixed_point_iters=EXACT_ITERS)
    assert max(seen) == horizon - 1 and min(seen) == sampler.timesteps(1000, horizon)[-1].item()
    assert set(seen) == set(sampler.timesteps(1000, horizon).tolist())
    back = sampler.sample(DENOISE, x_t, SCHEDULE, horizon=horizon)
    assert (back - x0).abs().max().item() < 1e-6
    # x_{599} is much less noisy than x_{999}: its correlation with x0 stays high.
    assert torch.corrcoef(torch.stack([x_t.flatten(), x0.flatten()]))[0, 1].item() > 0.5


@pytest.mark.parametrize(
    ("sampler", "iters", "key"),
    [
        (DDIMSampler(10, eta=1.0), 0, "sampler.eta"),
        (DDIMSampler(10, eta=0.5), 0, "sampler.eta"),
        (DDPMSampler(10), 0, "sampler"),
        (DDIMSampler(10), -1, "fixed_point_iters"),
        (DDIMSampler(10), 1.5, "fixed_point_iters"),
        (DDIMSampler(10), True, "fixed_point_iters"),
    ],
)
def test_bad_input_raises_config_error(sampler, iters, key: str):
    with pytest.raises(ConfigError) as raised:
        ddim_invert(sampler, DENOISE, gaussian_data(), SCHEDULE, fixed_point_iters=iters)
    assert raised.value.key == key


def test_inversion_is_deterministic_and_the_callback_climbs_in_t():
    sampler, x0 = DDIMSampler(8, "leading"), gaussian_data()
    calls: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def callback(index: int, t: torch.Tensor, x: torch.Tensor, x0_hat: torch.Tensor) -> None:
        calls.append((index, t, x, x0_hat))

    first = ddim_invert(sampler, DENOISE, x0, SCHEDULE, fixed_point_iters=3, callback=callback)
    second = ddim_invert(sampler, DENOISE, x0, SCHEDULE, fixed_point_iters=3)
    assert torch.equal(first, second)
    assert [index for index, *_ in calls] == list(range(8))
    levels = [t[0].item() for _, t, _, _ in calls]
    assert levels == sampler.timesteps(1000).flip(0).tolist() and levels == sorted(set(levels))
    for _, t, x, x0_hat in calls:
        assert t.shape == (SHAPE[0],) and t.dtype == torch.long
        assert x.shape == x0_hat.shape == SHAPE
    assert torch.equal(calls[-1][2], first)


@pytest.mark.parametrize("process", [FlowSchedule(), FlowSchedule(shift=3.0), EDMSchedule()],
                         ids=["flow", "flow_shift3", "edm"])
def test_inversion_round_trips_on_continuous_processes(process):
    """The walk runs on the process's VP equivalent y = x/sqrt(α² + σ²) on both ways, the denoiser
    sees x: the exact Gaussian denoiser of x_t = α·x0 + σ·ε round-trips to float precision (measured
    ≤ 3e-15 with 100 refinements; flow's first level, ᾱ = 0, needs the ε̂-slope gain: 0.025 without)."""

    def denoise(x_t: torch.Tensor, t: torch.Tensor, level=None):
        alpha, sigma = (v.view(-1, *[1] * (x_t.ndim - 1)).to(x_t) for v in process.alpha_sigma(t.double()))
        x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x_t - alpha * MU)
        return x0, (x_t - alpha * x0) / sigma

    sampler, x0 = DDIMSampler(10), gaussian_data()
    noise = ddim_invert(sampler, denoise, x0, process, fixed_point_iters=100)
    assert (sampler.sample(denoise, noise, process) - x0).abs().max().item() < 1e-10
    assert 0.5 < noise.std().item() < 1.5  # standard-normal-like: the sampler's noise convention
