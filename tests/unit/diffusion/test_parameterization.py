"""ε / x0 / v parameterisations: targets and exact conversions back to (x0, ε)."""

import pytest
import torch

from ldmlab.diffusion.parameterizations.base import Parameterization
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.parameterizations.v import VParameterization
from ldmlab.diffusion.parameterizations.x0 import X0Parameterization
from ldmlab.diffusion.schedules.cosine import CosineSchedule
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule

PARAMETERIZATIONS = [EpsParameterization(), X0Parameterization(), VParameterization()]
SCHEDULE = ScaledLinearSchedule()
ZERO_SNR_SCHEDULE = CosineSchedule(zero_terminal_snr=True)


def noisy_batch(schedule, t: list[int]):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(t), 3, 4, 4, generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    t_batch = torch.tensor(t)
    return x0, noise, schedule.q_sample(x0, t_batch, noise), t_batch


@pytest.mark.parametrize("param", PARAMETERIZATIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("schedule", [SCHEDULE, ZERO_SNR_SCHEDULE], ids=["plain", "zero_snr"])
def test_round_trip_recovers_x0_and_eps(param: Parameterization, schedule):
    """To 1e-5 everywhere, except ε-prediction where ᾱ → 0 (x0 is then not identifiable)."""
    zero_snr_eps = param.name == "eps" and schedule.zero_terminal_snr
    steps = [0, 1, 500, 900] if zero_snr_eps else [0, 1, 500, 998, 999]
    x0, noise, x_t, t = noisy_batch(schedule, steps)
    target = param.target(x0, noise, x_t, t, schedule)
    x0_hat, eps_hat = param.to_x0_eps(target, x_t, t, schedule)
    assert torch.allclose(x0_hat, x0, atol=1e-5)
    assert torch.allclose(eps_hat, noise, atol=1e-5)


def test_targets_match_their_definitions():
    x0, noise, x_t, t = noisy_batch(SCHEDULE, [10, 700])
    ab = SCHEDULE.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.equal(EpsParameterization().target(x0, noise, x_t, t, SCHEDULE), noise)
    assert torch.equal(X0Parameterization().target(x0, noise, x_t, t, SCHEDULE), x0)
    v = VParameterization().target(x0, noise, x_t, t, SCHEDULE)
    assert torch.allclose(v, ab.sqrt() * noise - (1 - ab).sqrt() * x0, atol=1e-6)


def test_v_and_x0_are_exact_at_zero_snr():
    """At ᾱ = 0: x_t = ε, v = −x0; both conversions stay exact and finite."""
    x0, noise, x_t, t = noisy_batch(ZERO_SNR_SCHEDULE, [999, 999])
    assert torch.equal(x_t, noise)
    v = VParameterization().target(x0, noise, x_t, t, ZERO_SNR_SCHEDULE)
    assert torch.equal(v, -x0)
    assert torch.equal(VParameterization().to_x0_eps(v, x_t, t, ZERO_SNR_SCHEDULE)[0], x0)
    assert torch.equal(X0Parameterization().to_x0_eps(x0, x_t, t, ZERO_SNR_SCHEDULE)[1], x_t)


def test_eps_at_zero_snr_stays_finite():
    x0, noise, x_t, t = noisy_batch(ZERO_SNR_SCHEDULE, [999])
    x0_hat, eps_hat = EpsParameterization().to_x0_eps(noise + 0.1, x_t, t, ZERO_SNR_SCHEDULE)
    assert torch.isfinite(x0_hat).all()
    assert torch.equal(eps_hat, noise + 0.1)


@pytest.mark.parametrize("param", PARAMETERIZATIONS, ids=lambda p: p.name)
def test_gradient_of_x0_wrt_output_is_the_conversion_coefficient(param: Parameterization):
    """∂x0/∂output: −sqrt(1−ᾱ)/sqrt(ᾱ) (ε), 1 (x0), −sqrt(1−ᾱ) (v)."""
    t = torch.tensor([300])
    ab = SCHEDULE.alphas_cumprod[t].item()
    expected = {"eps": -(((1 - ab) / ab) ** 0.5), "x0": 1.0, "v": -((1 - ab) ** 0.5)}[param.name]
    output = torch.zeros(1, 1, 2, 2, requires_grad=True)
    x0_hat, _ = param.to_x0_eps(output, torch.randn(1, 1, 2, 2), t, SCHEDULE)
    x0_hat.sum().backward()
    assert torch.allclose(output.grad, torch.full_like(output, expected), rtol=1e-5)
