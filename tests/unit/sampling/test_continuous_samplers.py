"""ODE / SDE samplers of the continuous processes, on Gaussian data with its exact denoiser.

For x0 ~ N(μ, s²) elementwise and x_t = α·x0 + σ·ε, E[x0 | x_t] = μ + α s²/(α²s² + σ²)·(x_t − αμ)
and E[ε | x_t] = (x_t − α·E[x0 | x_t])/σ. The probability-flow ODE is then linear, so a deterministic
sampler maps each noise value z to a + b·z: with noise standardised over the batch (mean 0, std 1
exactly) the output's mean and std are a and |b| with no sampling error. The exact flow carries z to
μ + s·z on flow matching (x = z at t = 1) and to μ + (σ_max·z − μ)·s/sqrt(s² + σ_max²) on EDM.
"""

import math

import numpy as np
import pytest
import torch

from ldmlab.diffusion.schedules.continuous import ContinuousProcess
from ldmlab.diffusion.schedules.edm import EDMSchedule
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.sampling.samplers.continuous import ContinuousSampler, Plan
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.sampling.samplers.edm import EDMSampler
from ldmlab.sampling.samplers.euler import EulerSampler
from ldmlab.sampling.samplers.heun import HeunSampler
from ldmlab.sampling.samplers.sde import EulerMaruyamaSampler
from ldmlab.utils.errors import FieldError

MU, S = 0.5, 0.7
FLOW, EDM = FlowSchedule(), EDMSchedule()


def exact_denoiser(process: ContinuousProcess, calls: list[float] | None = None):
    def denoise(x_t: torch.Tensor, t: torch.Tensor, level: float):
        assert t.shape == (x_t.shape[0],) and t.dtype == x_t.dtype and torch.all(t == level)
        if calls is not None:
            calls.append(level)
        alpha, sigma = (v.view(-1, *[1] * (x_t.ndim - 1)) for v in process.alpha_sigma(t))
        x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x_t - alpha * MU)
        return x0, (x_t - alpha * x0) / sigma

    return denoise


def standard_noise(shape=(4096, 1, 2, 2), seed: int = 0) -> torch.Tensor:
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (z - z.mean()) / z.std()


def run(sampler: ContinuousSampler, process: ContinuousProcess, noise: torch.Tensor, seed: int = 0,
        calls: list[float] | None = None, callback=None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return sampler.sample(exact_denoiser(process, calls), noise, process, generator, callback)


@pytest.mark.parametrize(
    ("process", "sampler"),
    [(FLOW, EulerSampler(100)), (FLOW, HeunSampler(25)), (EDM, EulerSampler(200)), (EDM, HeunSampler(40)),
     (EDM, EDMSampler(40))],
    ids=["flow-euler", "flow-heun", "edm-euler", "edm-heun", "edm-edm"],
)
def test_ode_samplers_reach_the_data_moments(process, sampler):
    """Deterministic: the exact flow's mean (μ, or μ·(1 − s/sqrt(s² + σ_max²)) = μ − 0.0044 on EDM, whose
    start σ_max·z ignores μ) to 1e-3 (measured < 1e-4) and its std (≈ s) to 2.5 % (measured: flow
    Euler −1.3 %, Heun −0.1 %; EDM Euler −1.4 %, Heun/EDM +0.9 %)."""
    x = run(sampler, process, standard_noise())
    shrink = 1.0 if process is FLOW else EDM.sigma_max / math.hypot(S, EDM.sigma_max)
    start_mean = 0.0 if process is FLOW else S / math.hypot(S, EDM.sigma_max)
    assert x.mean().item() == pytest.approx(MU * (1 - start_mean), abs=1e-3)
    assert x.std().item() == pytest.approx(S * shrink, rel=0.025)


def test_euler_on_the_linear_path_is_ddim():
    """Euler's x + (t_next − t)(ε̂ − x̂0) with x = (1 − t)x̂0 + tε̂ is (1 − t_next)x̂0 + t_next·ε̂: DDIM."""
    noise = standard_noise((64, 1, 2, 2))
    for steps in (1, 7, 20):
        euler = run(EulerSampler(steps), FLOW, noise)
        ddim = DDIMSampler(steps).sample(exact_denoiser(FLOW), noise, FLOW)
        torch.testing.assert_close(euler, ddim, rtol=0, atol=1e-12)
    shifted = FlowSchedule(shift=3.0)
    euler = EulerSampler(10).sample(exact_denoiser(shifted), noise, shifted)
    torch.testing.assert_close(euler, DDIMSampler(10).sample(exact_denoiser(shifted), noise, shifted),
                               rtol=0, atol=1e-12)


def convergence_slope(make, process: ContinuousProcess) -> float:
    """Least-squares slope of log RMS error over steps 8…64, against a 2048-step Heun solution of the
    same noise."""
    noise = standard_noise((256, 1, 1, 1))
    reference = run(HeunSampler(2048), process, noise)
    steps = [8, 16, 32, 64]
    errors = [(run(make(n), process, noise) - reference).square().mean().sqrt().item() for n in steps]
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


@pytest.mark.parametrize("process", [FLOW, FlowSchedule(shift=3.0), EDM], ids=["flow", "flow-shift3", "edm"])
def test_convergence_order_euler_1_heun_2(process):
    """Measured slopes: Euler −0.97 / −0.95 / −0.98, Heun −2.10 / −1.94 / −2.22."""
    assert -1.3 <= convergence_slope(EulerSampler, process) <= -0.7
    assert -2.5 <= convergence_slope(HeunSampler, process) <= -1.6


def test_model_calls_levels_and_callbacks():
    """Euler and the SDE call the model once per step, Heun and EDM 2N − 1 times (no call at level 0)."""
    noise = standard_noise((8, 1, 2, 2))
    levels = FLOW.grid(6).tolist()
    for sampler, expected in [
        (EulerSampler(6), levels[:-1]),
        (EulerMaruyamaSampler(6), levels[:-1]),
        (HeunSampler(6), [levels[0]] + [v for v in levels[1:-1] for _ in range(2)]),
    ]:
        calls, seen = [], []

        def callback(i, t, x, x0, seen=seen):
            seen.append((i, t[0].item(), x.shape, x0.shape))

        run(sampler, FLOW, noise, calls=calls, callback=callback)
        assert calls == expected
        assert seen == [(i, levels[i], noise.shape, noise.shape) for i in range(6)]


def test_edm_grid_and_levels_are_the_papers():
    """EDM eq. 5 with N = 18: σ_0 = 80, σ_17 = 0.002, σ_18 = 0; the sampler calls the model at σ_0…σ_17."""
    rho, low, high = 7.0, 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    paper = [(high + i / 17 * (low - high)) ** rho for i in range(18)] + [0.0]
    grid = EDM.grid(18).tolist()
    assert grid == pytest.approx(paper, rel=1e-12) and grid[0] == pytest.approx(80) and grid[-1] == 0.0
    calls = []
    run(EDMSampler(), EDM, standard_noise((4, 1, 1, 1)), calls=calls)
    assert len(calls) == 35 and sorted(set(calls), reverse=True) == grid[:-1]


def test_edm_churn_raises_the_level_inside_its_window():
    """γ = min(S_churn/N, √2 − 1) where S_min ≤ σ_i ≤ S_max: the first call of step i is at σ_i(1 + γ)."""
    sampler, calls = EDMSampler(18, s_churn=40, s_min=0.05, s_max=50), []
    run(sampler, EDM, standard_noise((4, 1, 1, 1)), calls=calls)
    grid, gamma = EDM.grid(18).tolist(), math.sqrt(2) - 1
    firsts = [calls[2 * i] for i in range(18)]
    expected = [s * (1 + gamma) if 0.05 <= s <= 50 else s for s in grid[:-1]]
    assert firsts == pytest.approx(expected, rel=1e-12)
    assert firsts[0] == grid[0] and firsts[5] > grid[5]


def test_edm_without_churn_is_heun_bit_for_bit():
    noise = standard_noise((64, 1, 2, 2)).float()
    for steps in (1, 2, 18):
        assert torch.equal(run(EDMSampler(steps), EDM, noise), run(HeunSampler(steps), EDM, noise))


def test_edm_with_churn_reaches_the_moments():
    """Stochastic: 65k draws (SE 0.003 on the mean, 0.3 % on the std); measured mean +0.002, std +3.2 %."""
    x = run(EDMSampler(40, s_churn=40, s_min=0.05, s_max=50), EDM, standard_noise((4096, 1, 4, 4)))
    assert x.mean().item() == pytest.approx(MU, abs=0.015)
    assert x.std().item() == pytest.approx(S, rel=0.045)


@pytest.mark.parametrize("process", [FLOW, EDM], ids=["flow", "edm"])
@pytest.mark.parametrize("diffusion", ["sigma", "sbdm"])
def test_euler_maruyama_250_steps_reaches_the_moments(process, diffusion):
    """Stochastic: 65k draws; measured over 3 seeds |mean − μ| ≤ 0.003, std −0.4…+1.7 %."""
    x = run(EulerMaruyamaSampler(250, diffusion), process, standard_noise((4096, 1, 4, 4)))
    assert torch.isfinite(x).all()
    assert x.mean().item() == pytest.approx(MU, abs=0.015)
    assert x.std().item() == pytest.approx(S, rel=0.03)


def test_euler_maruyama_diffusion_forms():
    """w(t): sigma = σ, sbdm = σσ' − σ²α'/α (t/(1 − t) on the linear path, 0 where α = 0; σ on EDM),
    constant = 1, each times diffusion_norm; norm 0 is Euler exactly."""
    flow, edm = Plan.of(FLOW, 4), Plan.of(EDM, 4)
    weights = [EulerMaruyamaSampler(4, "sbdm", 2.0).weight(flow, i) for i in range(4)]
    assert weights == pytest.approx([0.0] + [2 * t / (1 - t) for t in (0.75, 0.5, 0.25)], rel=1e-12)
    sbdm_edm = [EulerMaruyamaSampler(4, "sbdm").weight(edm, i) for i in range(4)]
    assert sbdm_edm == pytest.approx(edm.levels[:-1], rel=1e-12)
    sigma_flow = [EulerMaruyamaSampler(4, "sigma", 0.5).weight(flow, i) for i in range(4)]
    assert sigma_flow == [0.5, 0.375, 0.25, 0.125]
    assert EulerMaruyamaSampler(4, "constant", 3.0).weight(flow, 2) == 3.0
    noise = standard_noise((16, 1, 2, 2))
    ode = run(EulerMaruyamaSampler(9, diffusion_norm=0.0), FLOW, noise)
    assert torch.equal(ode, run(EulerSampler(9), FLOW, noise))


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler(), EDMSampler(), EulerMaruyamaSampler()],
                         ids=lambda s: type(s).__name__)
def test_discrete_schedules_are_refused(sampler):
    schedule = ScaledLinearSchedule()
    message = (rf"sampler\._target_: {type(sampler).__name__} integrates a continuous-time process.*Fix: use "
               r"sampler=ddim\|dpmpp\|ddpm, or train with diffusion/objective=flow\|edm")
    with pytest.raises(FieldError, match=message):
        sampler.sample(exact_denoiser(FLOW), torch.randn(1, 1, 2, 2), schedule)
    with pytest.raises(FieldError, match="discrete"):
        sampler.check(1000)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: EulerMaruyamaSampler(diffusion="SBDM"), r"sampler\.diffusion: must be one of"),
        (lambda: EulerMaruyamaSampler(diffusion_norm=-1.0), r"sampler\.diffusion_norm"),
        (lambda: EDMSampler(s_churn=-1.0), r"sampler\.s_churn"),
        (lambda: EDMSampler(s_min=2.0, s_max=1.0), r"sampler\.s_min"),
        (lambda: EDMSampler(s_noise=-0.5), r"sampler\.s_noise"),
        (lambda: EulerSampler(spacing="leading").check(None), r"sampler\.spacing"),
        (lambda: EDMSampler().sample(exact_denoiser(FLOW), torch.randn(1, 1, 2, 2), FLOW),
         r"sampler\._target_: EDMSampler works in σ̃ = σ/α.*Fix: use sampler=heun"),
    ],
)
def test_bad_settings_are_refused(make, match):
    with pytest.raises(FieldError, match=match):
        make()
