"""Continuous objectives → diffusers schedulers: flow matching + velocity → FlowMatchEulerDiscreteScheduler,
EDM + its preconditioning → EDMEulerScheduler, on ldmlab's grids, stepping as ldmlab's samplers step;
every other pairing refuses with one line naming the key, before anything is written."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from diffusers import EDMEulerScheduler, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from hydra.utils import instantiate

from ldmlab.diffusion.parameterizations.edm import EDMParameterization
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.parameterizations.velocity import VelocityParameterization
from ldmlab.diffusion.schedules.edm import EDMSchedule
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.interop.continuous_scheduler import flow_sigmas
from ldmlab.interop.diffusers_folder import export_ldm
from ldmlab.interop.scheduler import to_diffusers_scheduler
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import ConfigError, FieldError
from tests.conftest import compose_config


def scheduler_of(schedule, parameterization):
    return to_diffusers_scheduler(SimpleNamespace(schedule=schedule, parameterization=parameterization), {})


def network(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear stand-in for the backbone: output (B, C, H, W) of input x and time (B,) or ()."""
    return torch.tanh(1.3 * x.flip(-1)) + 0.5 * torch.sin(time.reshape(-1, 1, 1, 1) / 300.0 + x)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_scheduler_walks_flowschedule_grid(shift: float) -> None:
    scheduler, diffs = scheduler_of(FlowSchedule(shift), VelocityParameterization())
    assert isinstance(scheduler, FlowMatchEulerDiscreteScheduler)
    assert (scheduler.config.shift, scheduler.config.num_train_timesteps) == (shift, 1000)
    assert diffs["scheduler sigmas"] <= 1e-6 and diffs["scheduler timesteps"] <= 1e-3
    scheduler.set_timesteps(sigmas=flow_sigmas(4))
    # SD3's shift s·u/(1 + (s − 1)·u) of u = 1, 3/4, 1/2, 1/4, then σ = 0
    expected = [shift * u / (1 + (shift - 1) * u) for u in (1.0, 0.75, 0.5, 0.25)] + [0.0]
    assert scheduler.sigmas.tolist() == pytest.approx(expected, abs=1e-7)
    assert scheduler.timesteps.tolist() == pytest.approx([1000 * s for s in expected[:-1]], abs=1e-4)


def test_edm_scheduler_walks_edmschedule_grid() -> None:
    schedule = EDMSchedule(sigma_min=0.01, sigma_max=50.0, rho=5.0)
    scheduler, diffs = scheduler_of(schedule, EDMParameterization(sigma_data=0.7))
    assert isinstance(scheduler, EDMEulerScheduler)
    config = scheduler.config
    assert (config.sigma_min, config.sigma_max, config.rho, config.sigma_data) == (0.01, 50.0, 5.0, 0.7)
    assert diffs["scheduler sigmas"] <= 1e-4 and diffs["scheduler timesteps"] <= 1e-6
    scheduler.set_timesteps(3)  # EDM eq. 5: σ_max, the ρ-mean, σ_min, then 0
    middle = ((0.01 ** 0.2 + 50.0 ** 0.2) / 2) ** 5
    assert scheduler.sigmas.tolist() == pytest.approx([50.0, middle, 0.01, 0.0], rel=1e-6)
    c_noise = [math.log(sigma) / 4 for sigma in (50.0, middle, 0.01)]
    assert scheduler.timesteps.tolist() == pytest.approx(c_noise, abs=1e-6)


def ldmlab_trajectory(schedule, parameterization, x: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """x after each deterministic step of ldmlab's sampler (walking y = x/scale), in the process's x."""
    sampler, xs = DDIMSampler(steps=steps), []
    transitions = sampler.transitions(schedule)
    for i, tr in enumerate(transitions):
        t, x64 = torch.full((len(x),), tr.t, dtype=torch.float64), x.double()
        inputs, time = parameterization.network_inputs(x64, t, schedule)
        x0, eps = parameterization.to_x0_eps(network(inputs.float(), time.float()).double(), x64, t, schedule)
        y = sampler.step(x64 / tr.scale, x0, eps, tr, None, None)
        x = (y * (transitions[i + 1].scale if i + 1 < steps else 1.0)).float()
        xs.append(x)
    return xs


@torch.no_grad()
def test_one_diffusers_flow_step_is_ldmlab_euler_step() -> None:
    schedule, steps = FlowSchedule(shift=3.0), 5
    scheduler = scheduler_of(schedule, VelocityParameterization())[0]
    scheduler.set_timesteps(sigmas=flow_sigmas(steps))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))  # the noise at σ = 1
    ours = ldmlab_trajectory(schedule, VelocityParameterization(), x, steps)
    grid = schedule.grid(steps)
    for i, t in enumerate(scheduler.timesteps):
        velocity = network(x, t)
        # Euler on dx/dt = u in closed form, then diffusers' step, then ldmlab's step
        euler = x.double() + (grid[i + 1] - grid[i]) * velocity.double()
        x = scheduler.step(velocity, t, x).prev_sample
        torch.testing.assert_close(x.double(), euler, rtol=0, atol=1e-5)
        torch.testing.assert_close(x, ours[i], rtol=0, atol=1e-5)
    assert x.std() > 0.1


@torch.no_grad()
def test_one_diffusers_edm_step_is_ldmlab_step() -> None:
    schedule, parameterization, steps = EDMSchedule(), EDMParameterization(sigma_data=0.5), 4
    scheduler = scheduler_of(schedule, parameterization)[0]
    scheduler.set_timesteps(steps)
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    x = noise * scheduler.init_noise_sigma  # sqrt(σ_max² + 1), as ldmlab's first x = scale·noise
    ours = ldmlab_trajectory(schedule, parameterization, x, steps)
    for i, t in enumerate(scheduler.timesteps):
        output = network(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(output, t, x).prev_sample
        torch.testing.assert_close(x, ours[i], rtol=1e-5, atol=1e-5 * float(ours[i].abs().max()))
    assert x.std() > 0.1


@pytest.mark.parametrize(("schedule", "parameterization", "key"), [
    (FlowSchedule(), EpsParameterization(), "diffusion/parameterization"),
    (FlowSchedule(), EDMParameterization(), "diffusion/parameterization"),
    (EDMSchedule(), VelocityParameterization(), "diffusion/parameterization"),
    (EDMSchedule(), EpsParameterization(), "diffusion/parameterization"),
    (FlowSchedule(time_scale=1.0), VelocityParameterization(), "diffusion.schedule.time_scale"),
], ids=["flow+eps", "flow+edm", "edm+velocity", "edm+eps", "flow-time_scale"])
def test_pairings_without_a_twin_refuse_naming_the_key(schedule, parameterization, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        scheduler_of(schedule, parameterization)
    assert err.value.key == key and "\n" not in str(err.value)
    if key.endswith("time_scale"):
        assert isinstance(err.value, FieldError)
        assert str(err.value).endswith("Fix: train with diffusion.schedule.time_scale=1000")


TINY_PIXEL_FLOW = ["first_stage=identity", "diffusion/objective=flow", "backbone.model_channels=32",
                   "backbone.num_res_blocks=1", "backbone.num_heads=2", "backbone.channel_mult=[1,2]",
                   "backbone.attention_resolutions=[2]", "conditioner_context_dim=32"]


def test_export_ldm_writes_a_flow_model_and_refuses_a_time_scale_before_writing(tmp_path) -> None:
    cfg = compose_config("train_ldm", TINY_PIXEL_FLOW)
    module = instantiate(cfg.module)
    stored = dict(cfg.diffusion.schedule)
    with torch.no_grad():  # random weights everywhere, so the reloaded UNet check can fail
        for param in module.ema.shadow["backbone"].parameters():
            param.copy_(0.1 * torch.randn_like(param))
    parts, diffs, _ = export_ldm(module, stored, tmp_path, True, 1e-5, torch.Generator().manual_seed(0))
    assert parts == ["unet", "scheduler", "conditioner"] and diffs["unet"] <= 1e-4
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "scheduler")
    assert scheduler.config.shift == 1.0
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet", low_cpu_mem_usage=False)
    assert unet.config.in_channels == cfg.data.channels

    module.schedule = FlowSchedule(time_scale=1.0)
    out = tmp_path / "never"
    out.mkdir()
    with pytest.raises(FieldError, match=r"^diffusion\.schedule\.time_scale: "):
        export_ldm(module, stored, out, True, 1e-5, torch.Generator().manual_seed(0))
    assert list(out.iterdir()) == []
