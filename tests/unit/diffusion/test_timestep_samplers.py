"""Training timestep samplers and the objective that owns them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.loss import DiffusionLoss
from ldmlab.diffusion.loss_weighting.min_snr import MinSNRWeighting
from ldmlab.diffusion.objective import DiffusionObjective
from ldmlab.diffusion.parameterizations.v import VParameterization
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.diffusion.timestep_samplers.log_normal import LogNormalTimesteps
from ldmlab.diffusion.timestep_samplers.truncated import TruncatedTimesteps
from ldmlab.diffusion.timestep_samplers.uniform import UniformTimesteps
from ldmlab.utils.errors import ConfigError

SCHEDULE = ScaledLinearSchedule()
N = 200_000


def draw(sampler, n: int = N, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return sampler(n, SCHEDULE, torch.device("cpu"))


@pytest.mark.parametrize("t_max", [1, 10, 300, 1000])
def test_truncated_timesteps_stay_below_t_prime_and_are_uniform_there(t_max):
    t = draw(TruncatedTimesteps(t_max))
    assert t.dtype == torch.long and int(t.min()) == 0 and int(t.max()) == t_max - 1
    counts = torch.bincount(t, minlength=t_max).double()
    expected = N / t_max
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = max(t_max - 1, 1)
    assert chi2 < dof + 6 * math.sqrt(2 * dof), chi2  # ~6σ above the chi² mean
    assert TruncatedTimesteps(t_max).horizon(1000) == t_max


def test_truncated_at_t_equals_uniform_draw_for_draw():
    assert torch.equal(draw(TruncatedTimesteps(1000), 1000), draw(UniformTimesteps(), 1000))
    assert UniformTimesteps().horizon(1000) == 1000


@pytest.mark.parametrize("t_max", [0, -3, 2.5, True])
def test_truncated_rejects_a_bad_t_prime(t_max):
    with pytest.raises(ConfigError) as bad:
        TruncatedTimesteps(t_max)
    assert bad.value.key == "diffusion.timestep_sampler.t_max"


def test_truncated_above_t_names_the_key_and_a_fix_that_fits():
    sampler = TruncatedTimesteps(2000)
    with pytest.raises(ConfigError) as bad:
        sampler.horizon(1000)
    assert bad.value.key == "diffusion.timestep_sampler.t_max" and "t_max=500" in bad.value.fix


def test_log_normal_timesteps_follow_the_log_sigma_distribution():
    """ln σ_t of the drawn t has the requested median and spread (the grid is fine there)."""
    t = draw(LogNormalTimesteps(p_mean=-0.5, p_std=0.6))
    alpha_bar = SCHEDULE.alphas_cumprod.double()
    log_sigma = 0.5 * ((1 - alpha_bar).log() - alpha_bar.log())[t]
    assert abs(float(log_sigma.median()) + 0.5) < 0.02
    assert abs(float(log_sigma.std()) - 0.6) < 0.02
    shifted = draw(LogNormalTimesteps(p_mean=1.0, p_std=0.6))
    assert float(shifted.float().mean()) > float(t.float().mean()) + 100  # a higher σ is a later t


def test_log_normal_rejects_a_non_positive_spread():
    with pytest.raises(ConfigError, match="p_std"):
        LogNormalTimesteps(p_std=0.0)


class Affine(nn.Module):
    """A network with a gradient: output = a·x_t + b·t/T + (class embedding) (shapes of a UNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(0.3)), nn.Parameter(torch.tensor(-0.2))

    def forward(self, x, t, cond):
        return self.a * x + self.b * (t.float() / 1000).view(-1, 1, 1, 1)


def test_objective_is_the_closed_form_loss_with_its_draw_order():
    """t, then ε, then the conditioner: the loss of the refactored objective equals the one
    written out by hand (v target, min-SNR weights), so existing runs reproduce bit for bit."""
    objective = DiffusionObjective(VParameterization(), MinSNRWeighting("v", 5.0), DiffusionLoss("l2"),
                                   TruncatedTimesteps(400))
    model = nn.ModuleDict({"backbone": Affine(), "conditioner": Conditioner()})
    x0 = torch.randn(8, 2, 4, 4)
    torch.manual_seed(3)
    loss = objective(model, x0, {"image": x0}, SCHEDULE)
    torch.manual_seed(3)
    t = torch.randint(0, 400, (8,))
    noise = torch.randn_like(x0)
    ab = SCHEDULE.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    target = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    output = 0.3 * x_t - 0.2 * (t.float() / 1000).view(-1, 1, 1, 1)
    snr = SCHEDULE.signal_to_noise_ratio[t]
    weights = snr.clamp(max=5.0) / (snr + 1)
    expected = (weights * (output - target).square().flatten(1).mean(1)).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert model["backbone"].a.grad is not None and float(model["backbone"].a.grad.abs()) > 0
