"""The continuous processes (flow matching's interpolant, EDM), their parameterisations, level
samplers and objectives against hand computations and the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ldmlab.diffusion.loss import DiffusionLoss
from ldmlab.diffusion.loss_weighting.uniform import UniformWeighting
from ldmlab.diffusion.objective import DiffusionObjective
from ldmlab.diffusion.parameterizations.edm import EDMParameterization
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.parameterizations.v import VParameterization
from ldmlab.diffusion.parameterizations.velocity import VelocityParameterization
from ldmlab.diffusion.parameterizations.x0 import X0Parameterization
from ldmlab.diffusion.process import sigma_tilde, vp_alpha_bar
from ldmlab.diffusion.schedules.edm import EDMSchedule
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.diffusion.timestep_samplers.log_normal import LogNormalTimesteps
from ldmlab.diffusion.timestep_samplers.logit_normal import LogitNormalTimesteps
from ldmlab.diffusion.timestep_samplers.truncated import TruncatedTimesteps
from ldmlab.diffusion.timestep_samplers.uniform import UniformTimesteps
from ldmlab.utils.errors import ConfigError

T = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)


def test_flow_path_derivatives_shift_and_network_time_by_hand():
    flow = FlowSchedule(shift=3.0, time_scale=1000.0)
    alpha, sigma = flow.alpha_sigma(T)
    assert torch.equal(alpha, 1 - T) and torch.equal(sigma, T)
    assert flow.derivatives(T)[0].tolist() == [-1.0] * 5 and flow.derivatives(T)[1].tolist() == [1.0] * 5
    u = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(
        flow.from_unit(u), torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64)
    )  # 3u/(1+2u)
    assert torch.allclose(flow.network_time(T), 1000 * T)
    assert torch.allclose(flow.level_of_sigma_tilde(sigma_tilde(alpha[:-1], sigma[:-1])), T[:-1])
    assert FlowSchedule().grid(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(ConfigError, match=r"^diffusion\.schedule\.shift: must be > 0"):
        FlowSchedule(shift=0.0)


def test_edm_grid_and_c_noise_follow_the_paper():
    edm = EDMSchedule()
    levels = edm.grid(18)
    i = torch.arange(18, dtype=torch.float64)
    paper = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # EDM eq. 5
    assert torch.allclose(levels[:-1], paper, rtol=1e-12) and levels[-1] == 0.0
    assert torch.allclose(edm.network_time(torch.tensor([1.0, math.e**4])), torch.tensor([0.0, 1.0]))
    assert edm.alpha_sigma(T)[0].tolist() == [1.0] * 5 and torch.equal(edm.alpha_sigma(T)[1], T)


def test_discrete_schedules_are_one_instance_of_the_process_view():
    schedule = ScaledLinearSchedule()
    t = torch.tensor([0, 17, 999])
    alpha, sigma = schedule.alpha_sigma(t)
    assert torch.equal(alpha, schedule.sqrt_alphas_cumprod[t]) and torch.equal(
        sigma, schedule.sqrt_one_minus_alphas_cumprod[t]
    )
    assert torch.allclose(
        vp_alpha_bar(alpha.double(), sigma.double()), schedule.alphas_cumprod[t].double(), rtol=1e-6
    )
    x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    by_hand = alpha.view(-1, 1, 1, 1) * x0 + sigma.view(-1, 1, 1, 1) * noise
    assert torch.equal(schedule.q_sample(x0, t, noise), by_hand)
    assert not schedule.continuous and schedule.variance_preserving and schedule.num_timesteps == 1000


def test_edm_coefficients_against_table_1_and_its_loss_is_lambda_weighted():
    edm, pre, data = EDMSchedule(), EDMParameterization(sigma_data=0.5), 0.5
    sigma = torch.tensor([0.002, 0.3, 1.0, 7.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, _ = (c.flatten() for c in pre.coefficients(sigma, edm, 1))
    assert torch.allclose(c_skip, data**2 / (sigma**2 + data**2))
    assert torch.allclose(c_out, sigma * data / (sigma**2 + data**2).sqrt())
    assert torch.allclose(c_in, 1 / (sigma**2 + data**2).sqrt())
    x0, noise = torch.randn(5, 3, 2, 2, dtype=torch.float64), torch.randn(5, 3, 2, 2, dtype=torch.float64)
    x = edm.q_sample(x0, sigma, noise)
    inputs, time = pre.network_inputs(x, sigma, edm)
    assert torch.allclose(inputs, c_in.view(-1, 1, 1, 1) * x) and torch.allclose(time, sigma.log() / 4)
    f = torch.randn_like(x)  # any network output: D = c_skip·x + c_out·F
    d = c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1) * f
    x0_hat, eps_hat = pre.to_x0_eps(f, x, sigma, edm)
    assert torch.allclose(x0_hat, d) and torch.allclose(x, x0_hat + sigma.view(-1, 1, 1, 1) * eps_hat)
    # the unweighted error on F equals EDM's λ(σ)·‖D − x0‖², λ = (σ² + σ_d²)/(σ·σ_d)²
    lam = (sigma**2 + data**2) / (sigma * data) ** 2
    on_f = (f - pre.target(x0, noise, x, sigma, edm)).square().flatten(1).mean(1)
    assert torch.allclose(on_f, lam * (d - x0).square().flatten(1).mean(1))


@pytest.mark.parametrize(
    "parameterization",
    [
        EpsParameterization(),
        X0Parameterization(),
        VParameterization(),
        VelocityParameterization(),
        EDMParameterization(),
    ],
    ids=["eps", "x0", "v", "velocity", "edm"],
)
@pytest.mark.parametrize("process", [FlowSchedule(), EDMSchedule()], ids=["flow", "edm"])
def test_every_parameterisation_round_trips_on_the_continuous_processes(parameterization, process):
    """target(x0, ε) fed back as the network output gives back (x0, ε) exactly (float64)."""
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=torch.float64) * (
        1 if isinstance(process, FlowSchedule) else 20
    )
    x0, noise = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64)
    x_t = process.q_sample(x0, t, noise)
    x0_hat, eps_hat = parameterization.to_x0_eps(
        parameterization.target(x0, noise, x_t, t, process), x_t, t, process
    )
    assert torch.allclose(x0_hat, x0, atol=1e-9) and torch.allclose(eps_hat, noise, atol=1e-9)


def test_velocity_at_the_ends_of_the_flow_path_is_exact():
    flow, velocity = FlowSchedule(), VelocityParameterization()
    x0, noise = torch.randn(2, 1, 2, 2, dtype=torch.float64), torch.randn(2, 1, 2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    x_t = flow.q_sample(x0, t, noise)
    u = velocity.target(x0, noise, x_t, t, flow)
    assert torch.equal(u, noise - x0)  # the linear path's velocity ε − x0
    x0_hat, eps_hat = velocity.to_x0_eps(u, x_t, t, flow)
    assert torch.allclose(x0_hat, x0) and torch.allclose(eps_hat, noise)


def test_velocity_and_edm_refuse_a_discrete_schedule():
    for parameterization, option in ((VelocityParameterization(), "flow"), (EDMParameterization(), "edm")):
        with pytest.raises(
            ConfigError,
            match=rf"^diffusion\.parameterization\._target_: .*discrete.*"
            rf"Fix: diffusion/schedule={option}",
        ):
            parameterization.check(ScaledLinearSchedule())


class Recorder(nn.Module):
    """A 'backbone' that returns a fixed output and records what it was given."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output, self.seen = output, None

    def forward(self, x, t, cond):
        self.seen = (x, t)
        return self.output


class NoConditioner(nn.Module):
    def forward(self, batch):
        return {}

    def forward_centre(self, batch):
        return None


def test_flow_matching_loss_and_target_by_hand():
    """loss = mean_b mean ((output − (ε − x0))²) with t drawn first, then ε (the objective's order)."""
    flow = FlowSchedule(time_scale=1000.0)
    x0 = torch.randn(4, 2, 3, 3)
    output = torch.randn(4, 2, 3, 3)
    model = nn.ModuleDict({"backbone": Recorder(output), "conditioner": NoConditioner()})
    objective = DiffusionObjective(
        VelocityParameterization(), UniformWeighting(), DiffusionLoss(), LogitNormalTimesteps(0.0, 1.0)
    )
    torch.manual_seed(7)
    loss = objective(model, x0, {}, flow)
    torch.manual_seed(7)
    t = torch.sigmoid(torch.randn(4))
    noise = torch.randn_like(x0)
    x_t = (1 - t).view(-1, 1, 1, 1) * x0 + t.view(-1, 1, 1, 1) * noise
    assert torch.allclose(model["backbone"].seen[0], x_t) and torch.allclose(
        model["backbone"].seen[1], 1000 * t
    )
    assert torch.allclose(loss, (output - (noise - x0)).square().mean())


def test_logit_normal_median_spread_and_shift():
    torch.manual_seed(0)
    levels = LogitNormalTimesteps(mean=0.5, std=1.2)(200_000, FlowSchedule(), torch.device("cpu"))
    logits = torch.logit(levels.double())
    assert abs(levels.median().item() - 1 / (1 + math.exp(-0.5))) < 5e-3  # median sigmoid(m)
    assert abs(logits.mean().item() - 0.5) < 1e-2 and abs(logits.std().item() - 1.2) < 1e-2
    torch.manual_seed(0)
    shifted = LogitNormalTimesteps(mean=0.5, std=1.2)(200_000, FlowSchedule(shift=3.0), torch.device("cpu"))
    assert torch.allclose(shifted, 3 * levels / (1 + 2 * levels), atol=1e-6)
    discrete = LogitNormalTimesteps()(10_000, ScaledLinearSchedule(), torch.device("cpu"))
    assert discrete.dtype == torch.long and discrete.min() >= 0 and discrete.max() <= 999
    assert abs(discrete.float().median().item() - 500) < 15


def test_level_samplers_on_continuous_processes():
    torch.manual_seed(0)
    uniform = UniformTimesteps()(100_000, FlowSchedule(), torch.device("cpu"))
    assert uniform.dtype == torch.float32 and uniform.min() >= 0 and uniform.max() < 1
    assert abs(uniform.mean().item() - 0.5) < 5e-3
    sigmas = LogNormalTimesteps(-1.2, 1.2)(100_000, EDMSchedule(), torch.device("cpu"))
    assert abs(sigmas.log().mean().item() + 1.2) < 2e-2 and abs(sigmas.log().std().item() - 1.2) < 2e-2
    on_flow = LogNormalTimesteps(-1.2, 1.2)(100_000, FlowSchedule(), torch.device("cpu"))  # σ̃ = t/(1 − t)
    assert abs((on_flow / (1 - on_flow)).log().mean().item() + 1.2) < 2e-2
    with pytest.raises(ConfigError, match=r"^diffusion\.timestep_sampler\.t_max: .*continuous process"):
        TruncatedTimesteps(500).horizon(FlowSchedule().num_timesteps)
