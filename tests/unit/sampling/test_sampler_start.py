"""Starting a sampler at T' from another generator's sample (ES-DDPM / SDEdit)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.sampling.generate import generate_latents
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.sampling.samplers.ddpm import DDPMSampler
from ldmlab.utils.errors import ConfigError
from tests.unit.sampling.test_samplers import MEAN_TOL, MU, SCHEDULE, SHAPE, SIGMA, VAR_SE, gaussian_denoiser


def test_the_grid_is_laid_over_the_first_t_prime_levels():
    assert DDIMSampler(4).timesteps(1000, 300).tolist() == [299, 224, 149, 74]
    assert DDIMSampler(4, spacing="leading").timesteps(1000, 300).tolist() == [225, 150, 75, 0]
    assert DDPMSampler(5).timesteps(1000, 5).tolist() == [4, 3, 2, 1, 0]
    assert DDIMSampler(4).timesteps(1000, 1000).tolist() == DDIMSampler(4).timesteps(1000).tolist()


def test_more_steps_than_t_prime_names_the_trained_range():
    with pytest.raises(ConfigError) as bad:
        DDIMSampler(50).timesteps(1000, 30)
    assert bad.value.key == "sampler.steps" and "T'=30" in bad.value.problem
    assert "sampler.steps=30" in bad.value.fix
    with pytest.raises(ValueError):
        DDIMSampler(5).timesteps(1000, 1001)


@pytest.mark.parametrize("sampler", [DDIMSampler(20), DDPMSampler(50)])
def test_a_walk_started_at_t_prime_visits_only_t_below_it(sampler):
    seen = []
    x = torch.randn(4, 1, 2, 2)
    sampler.sample(gaussian_denoiser(SCHEDULE), x, SCHEDULE, torch.Generator().manual_seed(0),
                   callback=lambda i, t, x, x0: seen.append(t), horizon=200)
    visited = torch.cat(seen)
    assert int(visited.max()) == 199 and bool((visited <= 199).all()) and len(seen) == sampler.steps


def moments(x: torch.Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.var())


@pytest.mark.parametrize("t_prime", [300, 100])
def test_starting_from_the_noised_generator_sample_gives_the_data_moments(t_prime):
    """x̂ ~ N(μ, σ²) is a perfect other generator; q(x_{T'−1} | x̂) is then the exact marginal, so
    DDIM over every level below T' (discretisation error < 1 %) with the exact denoiser lands on
    E[x0 | x_{t_min}] (mean μ, variance σ²ᾱσ²/V). Starting from pure noise at T' − 1 instead
    misses the variance by far."""
    sampler = DDIMSampler(t_prime)
    generator = torch.Generator().manual_seed(0)
    x_hat = MU + SIGMA * torch.randn(SHAPE, generator=generator)
    t_start = torch.full((SHAPE[0],), t_prime - 1)
    start = SCHEDULE.q_sample(x_hat, t_start, torch.randn(SHAPE, generator=generator))
    denoise = gaussian_denoiser(SCHEDULE)
    x0 = sampler.sample(denoise, start, SCHEDULE, generator, horizon=t_prime)
    ab = float(SCHEDULE.alphas_cumprod[sampler.timesteps(1000, t_prime)[-1]])
    variance = SIGMA**2 * ab * SIGMA**2 / (ab * SIGMA**2 + 1 - ab)
    mean, var = moments(x0)
    assert abs(mean - MU) < MEAN_TOL and abs(var / variance - 1) < 6 * VAR_SE
    noise = torch.randn(SHAPE, generator=generator)
    wrong = sampler.sample(denoise, noise, SCHEDULE, generator, horizon=t_prime)
    assert abs(moments(wrong)[1] / variance - 1) > 0.2  # 0.39 at T' = 300


class Recorder(nn.Module):
    """A UNet stand-in: zero output (ε̂ = 0), remembering each (x_t, t) it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def forward(self, x, t, cond):
        self.calls.append((x.clone(), t.clone()))
        return torch.zeros_like(x)


def test_generate_latents_noises_the_init_to_t_prime_minus_one_with_its_generator():
    unet, init = Recorder(), torch.randn(3, 2, 4, 4)
    kwargs = dict(backbone=unet, conditioner=Conditioner(), schedule=SCHEDULE,
                  parameterization=EpsParameterization(), sampler=DDIMSampler(5), condition={},
                  latent_shape=(2, 4, 4), num_samples=3)
    generate_latents(**kwargs, generator=torch.Generator().manual_seed(7), init=init, horizon=250)
    noise = torch.randn((3, 2, 4, 4), generator=torch.Generator().manual_seed(7))
    ab = SCHEDULE.alphas_cumprod[249]
    x_t, t = unet.calls[0]
    torch.testing.assert_close(x_t, ab.sqrt() * init + (1 - ab).sqrt() * noise)
    assert t.tolist() == [249] * 3 and max(int(t.max()) for _, t in unet.calls) == 249
    unet.calls.clear()
    generate_latents(**kwargs, generator=torch.Generator().manual_seed(7))  # the default: noise at T − 1
    torch.testing.assert_close(unet.calls[0][0], noise)
    assert unet.calls[0][1].tolist() == [999] * 3
