"""Noise schedules: tables against their formulas, q(x_t | x_0) moments, the DDPM posterior."""

import math

import pytest
import torch

from ldmlab.diffusion.gather import gather
from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.diffusion.schedules.cosine import CosineSchedule
from ldmlab.diffusion.schedules.linear import LinearSchedule
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule

T = 1000
SPOTS = [0, 1, 250, 500, 998, 999]


def cumprod64(betas: list[float]) -> list[float]:
    out, prod = [], 1.0
    for beta in betas:
        prod *= 1.0 - beta
        out.append(prod)
    return out


def all_schedules(zero_terminal_snr: bool = False) -> list[NoiseSchedule]:
    return [
        LinearSchedule(zero_terminal_snr=zero_terminal_snr),
        ScaledLinearSchedule(zero_terminal_snr=zero_terminal_snr),
        CosineSchedule(zero_terminal_snr=zero_terminal_snr),
    ]


def test_linear_betas_and_alphas_cumprod_match_formula():
    schedule = LinearSchedule()
    betas = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]
    alphas_cumprod = cumprod64(betas)
    for t in SPOTS:
        assert schedule.betas[t].item() == pytest.approx(betas[t], rel=1e-5)
        assert schedule.alphas_cumprod[t].item() == pytest.approx(alphas_cumprod[t], rel=1e-5)


def test_scaled_linear_is_linear_in_sqrt_beta():
    schedule = ScaledLinearSchedule()
    lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
    for t in SPOTS:
        expected = (lo + (hi - lo) * t / (T - 1)) ** 2
        assert schedule.betas[t].item() == pytest.approx(expected, rel=1e-5)
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(
        cumprod64([(lo + (hi - lo) * i / (T - 1)) ** 2 for i in range(T)])[-1], rel=1e-4
    )


def test_cosine_alphas_cumprod_match_nichol_dhariwal():
    schedule = CosineSchedule()

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in [0, 10, 250, 500, 900]:
        expected = f((t + 1) / T) / f(0.0)
        assert schedule.alphas_cumprod[t].item() == pytest.approx(expected, rel=1e-5)
    assert schedule.betas.max().item() == pytest.approx(0.999)
    assert schedule.betas[-1].item() == pytest.approx(0.999)


@pytest.mark.parametrize("schedule", all_schedules() + all_schedules(zero_terminal_snr=True))
def test_tables_are_consistent(schedule: NoiseSchedule):
    ab = schedule.alphas_cumprod
    assert ab.shape == (T,) and ab.dtype == torch.float32
    assert bool((ab[1:] < ab[:-1]).all()), "ᾱ must strictly decrease"
    assert torch.allclose(schedule.alphas_cumprod_prev[1:], ab[:-1])
    assert schedule.alphas_cumprod_prev[0].item() == 1.0
    assert torch.allclose(
        schedule.sqrt_alphas_cumprod**2 + schedule.sqrt_one_minus_alphas_cumprod**2,
        torch.ones(T),
        atol=1e-6,
    )
    t = torch.tensor([0, 100, 600, 998])
    assert torch.allclose(schedule.snr(t), ab[t] / (1 - ab[t]), rtol=1e-3)
    assert all(torch.isfinite(buffer).all() for buffer in schedule.buffers())


@pytest.mark.parametrize("schedule", all_schedules())
def test_zero_terminal_snr_rescale(schedule: NoiseSchedule):
    rescaled = type(schedule)(zero_terminal_snr=True)
    sqrt_ab = schedule.sqrt_alphas_cumprod.double()
    first, last = sqrt_ab[0], sqrt_ab[-1]
    for t in [0, 300, 700, 998]:
        expected = ((sqrt_ab[t] - last) * first / (first - last)) ** 2
        assert rescaled.alphas_cumprod[t].item() == pytest.approx(expected.item(), rel=1e-4)
    assert rescaled.alphas_cumprod[-1].item() == 0.0
    assert rescaled.snr(torch.tensor([T - 1])).item() == 0.0
    assert rescaled.betas[-1].item() == 1.0
    assert rescaled.alphas_cumprod[0].item() == pytest.approx(schedule.alphas_cumprod[0].item())


def test_buffers_are_saved_and_follow_dtype_moves():
    schedule = LinearSchedule(num_timesteps=10)
    state = schedule.state_dict()
    assert {"betas", "alphas_cumprod", "posterior_variance"} <= set(state)
    fresh = LinearSchedule(num_timesteps=10, beta_end=0.05)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.alphas_cumprod, schedule.alphas_cumprod)
    assert schedule.to(torch.float64).alphas_cumprod.dtype == torch.float64


def test_gather_broadcasts_to_x():
    values = torch.arange(10.0)
    out = gather(values, torch.tensor([3, 7]), ndim=4)
    assert out.shape == (2, 1, 1, 1)
    assert out.flatten().tolist() == [3.0, 7.0]
    with pytest.raises(ValueError, match="t must have shape"):
        gather(values, torch.tensor([[3]]), ndim=4)


@pytest.mark.parametrize("t", [5, 400, 990])
def test_q_sample_moments(t: int):
    """Over 100k noises per pixel, mean and variance of x_t match sqrt(ᾱ)x0 and 1 − ᾱ.

    Tolerances are 5 standard errors: sqrt((1−ᾱ)/n) for the mean, (1−ᾱ)·sqrt(2/n) for the
    variance.
    """
    schedule = LinearSchedule()
    n = 100_000
    x0 = torch.tensor([-1.0, 0.3, 2.0]).repeat(n, 1)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
    x_t = schedule.q_sample(x0, torch.full((n,), t), noise)
    ab = schedule.alphas_cumprod[t].item()
    mean_tol = 5 * math.sqrt((1 - ab) / n)
    assert torch.allclose(x_t.mean(0), math.sqrt(ab) * x0[0], atol=mean_tol)
    assert torch.allclose(x_t.var(0), torch.full((3,), 1 - ab), rtol=5 * math.sqrt(2 / n))


@pytest.mark.parametrize("schedule", [LinearSchedule(), CosineSchedule(zero_terminal_snr=True)])
def test_q_posterior_matches_closed_form(schedule: NoiseSchedule):
    t = torch.tensor([0, 1, 500, T - 1])
    x0, x_t = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    mean, variance, log_variance = schedule.q_posterior(x0, x_t, t)
    betas = schedule.betas.double()  # ᾱ recomputed in float64: 1 − ᾱ is tiny at small t
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    beta = betas[t].view(-1, 1, 1, 1)
    ab = alphas_cumprod[t].view(-1, 1, 1, 1)
    ab_prev = alphas_cumprod_prev[t].view(-1, 1, 1, 1)
    expected_mean = (
        ab_prev.sqrt() * beta / (1 - ab) * x0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    )
    expected_variance = beta * (1 - ab_prev) / (1 - ab)
    assert mean.shape == x0.shape and variance.shape == (4, 1, 1, 1)
    assert torch.allclose(mean.double(), expected_mean, atol=1e-5)
    assert torch.allclose(variance.double(), expected_variance, rtol=1e-4, atol=1e-10)
    assert variance[0].item() == 0.0
    assert log_variance[0].item() == pytest.approx(math.log(expected_variance[1].item()), rel=1e-4)
    assert torch.allclose(log_variance[1:].double(), expected_variance[1:].log(), atol=1e-4)


@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_q_posterior_is_bayes_on_a_scalar_gaussian(t: int):
    """p(x_{t−1} | x_0) = N(√ᾱ_{t−1} x0, 1−ᾱ_{t−1}), p(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t):
    multiplying the two Gaussians in x_{t−1} gives precision 1/(1−ᾱ_{t−1}) + α_t/β_t."""
    schedule = LinearSchedule()
    betas = schedule.betas.double()
    beta = betas[t].item()
    ab_prev = torch.prod(1 - betas[:t]).item()
    x0, x_t = 0.7, -1.3
    precision = 1 / (1 - ab_prev) + (1 - beta) / beta
    bayes_variance = 1 / precision
    bayes_mean = bayes_variance * (
        math.sqrt(ab_prev) * x0 / (1 - ab_prev) + math.sqrt(1 - beta) * x_t / beta
    )
    mean, variance, _ = schedule.q_posterior(
        torch.tensor([x0]), torch.tensor([x_t]), torch.tensor([t])
    )
    assert mean.item() == pytest.approx(bayes_mean, rel=1e-4, abs=1e-6)
    assert variance.item() == pytest.approx(bayes_variance, rel=1e-4)


@pytest.mark.parametrize("num_timesteps", [0, 1, 2.5, True])
def test_bad_num_timesteps(num_timesteps):
    with pytest.raises(ValueError, match="num_timesteps"):
        LinearSchedule(num_timesteps=num_timesteps)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="beta_start"):
        LinearSchedule(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="beta_start"):
        ScaledLinearSchedule(beta_start=0.0)
    with pytest.raises(ValueError, match="s must be"):
        CosineSchedule(s=-0.1)
    with pytest.raises(ValueError, match="max_beta"):
        CosineSchedule(max_beta=1.5)
