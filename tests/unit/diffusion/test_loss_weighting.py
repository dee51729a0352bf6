"""Loss weightings (uniform, min-SNR-γ) and the weighted diffusion loss."""

import pytest
import torch

from ldmlab.diffusion.loss import DiffusionLoss
from ldmlab.diffusion.loss_weighting.min_snr import MinSNRWeighting
from ldmlab.diffusion.loss_weighting.uniform import UniformWeighting
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.parameterizations.v import VParameterization
from ldmlab.diffusion.parameterizations.x0 import X0Parameterization
from ldmlab.diffusion.schedules.linear import LinearSchedule
from ldmlab.utils.errors import ConfigError

SCHEDULE = LinearSchedule()
T_SPREAD = torch.tensor([0, 50, 200, 500, 999])  # SNR from ~1e4 down to ~4e-5: both sides of γ


def reference_snr(t: torch.Tensor) -> torch.Tensor:
    betas = SCHEDULE.betas.double()
    ab = torch.cumprod(1 - betas, 0)[t]
    return ab / (1 - ab)


def test_uniform_is_one():
    weights = UniformWeighting().weight(T_SPREAD, SCHEDULE)
    assert torch.equal(weights, torch.ones(len(T_SPREAD)))


@pytest.mark.parametrize("name", ["eps", "v", "x0"])
def test_min_snr_matches_formula(name: str):
    snr, gamma = reference_snr(T_SPREAD), 5.0
    clipped = snr.clamp(max=gamma)
    expected = {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[name]
    weights = MinSNRWeighting(name, gamma).weight(T_SPREAD, SCHEDULE)
    assert weights.shape == (len(T_SPREAD),)
    assert torch.allclose(weights.double(), expected, rtol=1e-4)
    assert (snr > gamma).any() and (snr < gamma).any()


@pytest.mark.parametrize(
    "param",
    [EpsParameterization(), VParameterization(), X0Parameterization()],
    ids=lambda p: p.name,
)
def test_min_snr_loss_equals_clipped_snr_times_x0_error(param):
    """w·‖target error‖² = min(SNR, γ)·‖x0 error‖², the point of the weighting."""
    t = torch.tensor([20, 300, 800])
    x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    x_t = SCHEDULE.q_sample(x0, t, noise)
    target = param.target(x0, noise, x_t, t, SCHEDULE)
    output = target + 0.1 * torch.randn_like(target)
    x0_hat, _ = param.to_x0_eps(output, x_t, t, SCHEDULE)
    weights = MinSNRWeighting(param.name).weight(t, SCHEDULE)
    lhs = weights * (output - target).square().flatten(1).sum(1)
    rhs = SCHEDULE.snr(t).clamp(max=5.0) * (x0_hat - x0).square().flatten(1).sum(1)
    assert torch.allclose(lhs, rhs, rtol=1e-3)


def test_min_snr_eps_weight_at_zero_snr_is_its_limit():
    schedule = LinearSchedule(zero_terminal_snr=True)
    weights = MinSNRWeighting("eps").weight(torch.tensor([999]), schedule)
    assert weights.item() == 1.0


def test_min_snr_bad_arguments():
    with pytest.raises(ConfigError, match=r"^diffusion\.loss_weighting\.parameterization: min-SNR "
                                          r".*'epsilon'.*Fix: diffusion/loss_weighting=uniform"):
        MinSNRWeighting("epsilon")
    with pytest.raises(ConfigError, match=r"^diffusion\.loss_weighting\.gamma: must be > 0"):
        MinSNRWeighting("v", gamma=0.0)


def test_l2_and_l1_values_on_a_toy_batch():
    output = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    weights = torch.tensor([1.0, 0.5])
    # per-sample l2: (1 + 4)/2 = 2.5, (4 + 4)/2 = 4 → (2.5 + 0.5·4)/2
    assert DiffusionLoss("l2")(output, target, weights).item() == pytest.approx(2.25)
    # per-sample l1: (1 + 2)/2 = 1.5, (2 + 2)/2 = 2 → (1.5 + 0.5·2)/2
    assert DiffusionLoss("l1")(output, target, weights).item() == pytest.approx(1.25)


def test_l2_gradient():
    output = torch.randn(4, 3, 2, 2, requires_grad=True)
    target, weights = torch.randn(4, 3, 2, 2), torch.rand(4)
    DiffusionLoss("l2")(output, target, weights).backward()
    expected = 2 * weights.view(-1, 1, 1, 1) * (output - target) / (4 * 12)
    assert torch.allclose(output.grad, expected.detach(), atol=1e-6)


def test_low_precision_inputs_give_float32_loss():
    output, target = torch.randn(2, 3, dtype=torch.bfloat16), torch.randn(2, 3)
    loss = DiffusionLoss()(output, target, torch.ones(2))
    assert loss.dtype == torch.float32


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="loss_type"):
        DiffusionLoss("huber")
