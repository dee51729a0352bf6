"""Samplers: step spacing, DDIM/DDPM variances, and sampling Gaussian data with its exact denoiser.

For x0 ~ N(μ, σ²) elementwise, E[x0 | x_t] = μ + α σ²/V·(x_t − α μ) and
E[ε | x_t] = s/V·(x_t − α μ) with α = sqrt(ᾱ), s = sqrt(1 − ᾱ), V = α²σ² + s² are a perfect
denoiser. A sampler's last step returns E[x0 | x_{t_min}] at the last visited step t_min,
whose variance is σ²·ᾱσ²/V (not σ²): the moment checks compare against that.
"""

import math

import pytest
import torch

from ldmlab.diffusion.gather import gather
from ldmlab.diffusion.parameterizations.v import VParameterization
from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.diffusion.schedules.linear import LinearSchedule
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.base import DenoiseFn, Sampler, Transition
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.sampling.samplers.ddpm import DDPMSampler
from ldmlab.sampling.samplers.dpmpp_2m import DPMPP2MSampler

MU, SIGMA = 0.5, 0.5
SHAPE = (100, 2, 10, 10)  # 20k scalar samples
N = math.prod(SHAPE)
MEAN_TOL = 0.02  # ≈ 6 standard errors σ/sqrt(N) = 0.0035; measured biases are below 0.003
VAR_SE = math.sqrt(2 / N)  # relative standard error of a variance estimate, 1 %
SCHEDULE = LinearSchedule()


def signal_and_noise(schedule: NoiseSchedule, t: torch.Tensor, ndim: int):
    return (
        gather(schedule.sqrt_alphas_cumprod, t, ndim),
        gather(schedule.sqrt_one_minus_alphas_cumprod, t, ndim),
    )


def gaussian_denoiser(schedule: NoiseSchedule) -> DenoiseFn:
    def denoise(x_t: torch.Tensor, t: torch.Tensor, level=None):
        alpha, s = signal_and_noise(schedule, t, x_t.ndim)
        v = alpha**2 * SIGMA**2 + s**2
        centred = x_t - alpha * MU
        return MU + alpha * SIGMA**2 / v * centred, s / v * centred

    return denoise


def final_variance(sampler: Sampler, schedule: NoiseSchedule) -> float:
    """Var(E[x0 | x_{t_min}]) = σ²·ᾱσ²/(ᾱσ² + 1 − ᾱ) at the sampler's last visited step."""
    ab = schedule.alphas_cumprod[sampler.timesteps(schedule.num_timesteps)[-1]].item()
    return SIGMA**2 * ab * SIGMA**2 / (ab * SIGMA**2 + 1 - ab)


def draw(sampler: Sampler, schedule: NoiseSchedule, denoise: DenoiseFn, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(SHAPE, generator=generator)
    return sampler.sample(denoise, noise, schedule, generator=generator)


def test_trailing_and_leading_timesteps():
    assert DDIMSampler(4).timesteps(1000).tolist() == [999, 749, 499, 249]
    assert DDIMSampler(4, spacing="leading").timesteps(1000).tolist() == [750, 500, 250, 0]
    assert DDIMSampler(3).timesteps(10).tolist() == [9, 6, 2]
    assert DDIMSampler(3, spacing="leading").timesteps(10).tolist() == [6, 3, 0]
    for spacing in ("trailing", "leading"):
        assert DDPMSampler(10, spacing).timesteps(10).tolist() == list(range(9, -1, -1))


def test_transitions_chain_the_levels():
    transitions = DDIMSampler(5).transitions(SCHEDULE)
    ab = SCHEDULE.alphas_cumprod.double()
    assert [tr.t for tr in transitions] == [999, 799, 599, 399, 199]
    assert transitions[0].last_alpha_bar is None
    for earlier, later in zip(transitions, transitions[1:], strict=False):
        assert later.alpha_bar == earlier.alpha_bar_prev == ab[later.t].item()
        assert later.last_alpha_bar == earlier.alpha_bar
    assert transitions[-1].alpha_bar_prev == 1.0 and transitions[-1].is_final


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: DDIMSampler(0), "steps"),
        (lambda: DDIMSampler(-3), "steps"),
        (lambda: DDIMSampler(2.5), "steps"),
        (lambda: DDIMSampler(10, spacing="linspace"), "spacing"),
        (lambda: DDIMSampler(10, eta=-0.1), "eta"),
        (lambda: DDPMSampler(10, variance="learned"), "variance"),
        (lambda: DPMPP2MSampler(10).timesteps(5), "steps=10 exceeds"),
    ],
)
def test_bad_arguments(make, argument: str):
    with pytest.raises(ValueError, match=argument):
        make()


def test_steps_above_t_fail_when_sampling():
    with pytest.raises(ValueError, match="steps=1001"):
        DDPMSampler(1001).sample(gaussian_denoiser(SCHEDULE), torch.randn(1, 1, 2, 2), SCHEDULE)


def test_ddim_eta0_is_deterministic_and_eta1_is_not():
    noise = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    denoise = gaussian_denoiser(SCHEDULE)

    def run(sampler: Sampler, seed: int) -> torch.Tensor:
        return sampler.sample(denoise, noise, SCHEDULE, torch.Generator().manual_seed(seed))

    assert torch.equal(run(DDIMSampler(10), 1), run(DDIMSampler(10), 2))
    assert not torch.allclose(run(DDIMSampler(10, eta=1.0), 1), run(DDIMSampler(10, eta=1.0), 2))


def test_ddim_eta1_variance_is_ddpm_posterior_variance_on_the_subsequence():
    ddim, ddpm = DDIMSampler(10, eta=1.0), DDPMSampler(10)
    ab = SCHEDULE.alphas_cumprod.double()
    for transition in ddim.transitions(SCHEDULE)[:-1]:
        a, a_prev = transition.alpha_bar, transition.alpha_bar_prev
        strided_beta = 1 - a / a_prev
        posterior = strided_beta * (1 - a_prev) / (1 - a)
        assert a == ab[transition.t].item()
        assert ddim.step_variance(a, a_prev) == pytest.approx(posterior, rel=1e-12)
        assert ddpm.step_variance(a, a_prev) == pytest.approx(posterior, rel=1e-12)
    assert DDIMSampler(10, eta=0.5).step_variance(0.5, 0.8) == pytest.approx(
        0.25 * ddpm.step_variance(0.5, 0.8)
    )
    assert DDPMSampler(10, variance="fixed_large").step_variance(0.5, 0.8) == pytest.approx(
        1 - 0.5 / 0.8
    )


def test_ddim_and_ddpm_single_step_noise_has_the_stated_variance():
    transition = DDIMSampler(10, eta=1.0).transitions(SCHEDULE)[3]
    x_t, x0, eps = torch.zeros(SHAPE), torch.full(SHAPE, 0.3), torch.full(SHAPE, -0.2)
    expected = DDPMSampler(10).step_variance(transition.alpha_bar, transition.alpha_bar_prev)
    for sampler in (DDIMSampler(10, eta=1.0), DDPMSampler(10)):
        generator = torch.Generator().manual_seed(0)
        x_prev = sampler.step(x_t, x0, eps, transition, None, generator)
        assert x_prev.var().item() == pytest.approx(expected, rel=5 * VAR_SE)


def test_ddpm_1000_steps_recovers_the_gaussian():
    """Fixed-small variance slightly under-disperses (measured −1.7 %); 5 SE on top."""
    sampler = DDPMSampler(1000)
    x = draw(sampler, SCHEDULE, gaussian_denoiser(SCHEDULE))
    assert x.mean().item() == pytest.approx(MU, abs=MEAN_TOL)
    assert x.var().item() == pytest.approx(final_variance(sampler, SCHEDULE), rel=0.02 + 5 * VAR_SE)


def test_ddpm_100_steps_fixed_small_and_large_bracket_the_exact_variance():
    """The exact reverse kernel's variance lies between β̃ and β (the posterior means agree),
    so the output variance of "fixed_small" must fall below the exact one and "fixed_large"
    above it (measured −11.5 % and +3.6 % at 100 steps, i.e. > 3 SE away)."""
    denoise = gaussian_denoiser(SCHEDULE)
    small = draw(DDPMSampler(100), SCHEDULE, denoise)
    large = draw(DDPMSampler(100, variance="fixed_large"), SCHEDULE, denoise)
    exact = final_variance(DDPMSampler(100), SCHEDULE)
    assert small.mean().item() == pytest.approx(MU, abs=MEAN_TOL)
    assert large.mean().item() == pytest.approx(MU, abs=MEAN_TOL)
    assert exact * 0.85 < small.var().item() < exact < large.var().item() < exact * 1.08


def test_ddim_50_steps_recovers_the_gaussian_up_to_its_known_contraction():
    """Each deterministic DDIM step scales the standardised sample by cos Δθ, θ = atan2(s, ασ)
    being the angle of (ασ, s), where the exact flow keeps it fixed: the output variance is
    the exact one times Π cos²Δθ (0.909 here), which is checked to 5 SE."""
    sampler = DDIMSampler(50)
    contraction = 1.0
    for tr in sampler.transitions(SCHEDULE)[:-1]:
        angles = [
            math.atan2(math.sqrt(1 - ab), math.sqrt(ab) * SIGMA)
            for ab in (tr.alpha_bar, tr.alpha_bar_prev)
        ]
        contraction *= math.cos(angles[0] - angles[1]) ** 2
    assert 0.85 < contraction < 0.95
    x = draw(sampler, SCHEDULE, gaussian_denoiser(SCHEDULE))
    assert x.mean().item() == pytest.approx(MU, abs=MEAN_TOL)
    expected = final_variance(sampler, SCHEDULE) * contraction
    assert x.var().item() == pytest.approx(expected, rel=5 * VAR_SE)


def test_dpmpp_2m_20_steps_recovers_the_gaussian():
    """Second order: measured variance bias +2 % at 20 steps; 5 SE on top."""
    sampler = DPMPP2MSampler(20)
    x = draw(sampler, SCHEDULE, gaussian_denoiser(SCHEDULE))
    assert x.mean().item() == pytest.approx(MU, abs=MEAN_TOL)
    assert x.var().item() == pytest.approx(final_variance(sampler, SCHEDULE), rel=0.03 + 5 * VAR_SE)


def exact_v_model(schedule: NoiseSchedule):
    """A "network" returning the exact v = α·E[ε|x_t] − s·E[x0|x_t] for the Gaussian data."""
    denoise = gaussian_denoiser(schedule)

    def model(x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, eps = denoise(x_t, t)
        alpha, s = signal_and_noise(schedule, t, x_t.ndim)
        return alpha * eps - s * x0

    return model


def test_zero_terminal_snr_v_prediction_recovers_the_gaussian():
    """With ᾱ_{T−1} = 0 the start N(0, 1) is exact, so even the mean has no start bias."""
    schedule = ScaledLinearSchedule(zero_terminal_snr=True)
    denoise = GuidedDenoiser(exact_v_model(schedule), VParameterization(), schedule, cond={})
    sampler = DPMPP2MSampler(20)
    x = draw(sampler, schedule, denoise)
    assert x.mean().item() == pytest.approx(MU, abs=MEAN_TOL)
    assert x.var().item() == pytest.approx(final_variance(sampler, schedule), rel=0.03 + 5 * VAR_SE)


@pytest.mark.parametrize(
    "sampler", [DDPMSampler(5), DDIMSampler(5), DDIMSampler(5, eta=1.0), DPMPP2MSampler(5)]
)
def test_samplers_stay_finite_at_zero_terminal_snr(sampler: Sampler):
    schedule = LinearSchedule(zero_terminal_snr=True)
    denoise = GuidedDenoiser(exact_v_model(schedule), VParameterization(), schedule, cond={})
    seen = []
    x = sampler.sample(
        denoise,
        torch.randn(4, 1, 3, 3),
        schedule,
        callback=lambda i, t, x_i, x0: seen.append((i, t[0].item(), bool(x_i.isfinite().all()))),
    )
    assert torch.isfinite(x).all()
    assert seen == [(i, t, True) for i, t in enumerate([999, 799, 599, 399, 199])]


def test_dpmpp_2m_first_step_is_ddim():
    noise = torch.randn(4, 1, 3, 3)
    firsts = []
    for sampler in (DDIMSampler(8), DPMPP2MSampler(8)):
        sampler.sample(
            gaussian_denoiser(SCHEDULE),
            noise,
            SCHEDULE,
            callback=lambda i, t, x, x0: firsts.append(x) if i == 0 else None,
        )
    assert torch.allclose(firsts[0], firsts[1], atol=1e-6)


def ode_error(sampler: Sampler, steps: int) -> float:
    """Max error of the sampler's steps against the exact probability-flow ODE of the Gaussian
    data, on a grid uniform in λ = log(α/s) from −3 to 3 (ᾱ = sigmoid(2λ)).

    The exact flow keeps (x − αμ)/sqrt(V) constant.
    """
    levels = torch.sigmoid(2 * torch.linspace(-3.0, 3.0, steps + 1, dtype=torch.float64)).tolist()
    start = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)

    def variance(ab: float) -> float:
        return ab * SIGMA**2 + 1 - ab

    x, last_x0 = start, None
    for i in range(steps):
        ab = levels[i]
        v = variance(ab)
        x0 = MU + math.sqrt(ab) * SIGMA**2 / v * (x - math.sqrt(ab) * MU)
        eps = math.sqrt(1 - ab) / v * (x - math.sqrt(ab) * MU)
        transition = Transition(i, 0, ab, levels[i + 1], levels[i - 1] if i else None)
        x, last_x0 = sampler.step(x, x0, eps, transition, last_x0, None), x0
    first, last = levels[0], levels[-1]
    exact = math.sqrt(last) * MU + math.sqrt(variance(last) / variance(first)) * (
        start - math.sqrt(first) * MU
    )
    return (x - exact).abs().max().item()


def test_convergence_orders_ddim_first_dpmpp_2m_second():
    """Halving the step in λ halves DDIM's error and quarters DPM-Solver++(2M)'s."""
    ddim_ratio = ode_error(DDIMSampler(32), 32) / ode_error(DDIMSampler(64), 64)
    dpmpp_ratio = ode_error(DPMPP2MSampler(32), 32) / ode_error(DPMPP2MSampler(64), 64)
    assert 1.8 < ddim_ratio < 2.2
    assert 3.5 < dpmpp_ratio < 4.5
