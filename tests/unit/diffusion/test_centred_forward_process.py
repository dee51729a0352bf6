"""DiffuseVAE's formulation 2: the forward process centred on x̂, in training and sampling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldmlab.conditioning.base import Embedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.loss import DiffusionLoss
from ldmlab.diffusion.loss_weighting.uniform import UniformWeighting
from ldmlab.diffusion.objective import DiffusionObjective
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.parameterizations.x0 import X0Parameterization
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.guidance.base import GradientGuidance
from ldmlab.sampling.generate import generate_latents
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import ConfigError
from tests.unit.sampling.test_sampler_start import Recorder

SCHEDULE = ScaledLinearSchedule()


class Centre(Embedder):
    """x̂ as it is (concat), centring the forward process."""

    centre_forward_process = True

    def __init__(self) -> None:
        super().__init__("x_hat", "concat")
        self.null_embedding = nn.Parameter(torch.zeros(1))

    def forward(self, x_hat):
        return x_hat

    def null(self, batch_size):
        return self.null_embedding.view(1, 1, 1, 1).expand(batch_size, 1, 4, 4)


@pytest.mark.parametrize("t", [0, 300, 999])
def test_centred_q_has_the_closed_form_moments(t):
    x0, x_hat = torch.full((1, 1, 4, 4), 0.8), torch.full((1, 1, 4, 4), -0.5)
    noise = torch.randn(50_000, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    steps = torch.full((len(noise),), t)
    x_t = SCHEDULE.q_sample(x0.expand_as(noise), steps, noise, centre=x_hat.expand_as(noise))
    ab = float(SCHEDULE.alphas_cumprod[t])
    mean = ab**0.5 * 0.8 + (1 - ab**0.5) * -0.5
    assert abs(float(x_t.mean()) - mean) < 0.005 and abs(float(x_t.var()) / (1 - ab) - 1) < 0.01
    standard = SCHEDULE.q_sample(x0.expand_as(noise), steps, noise)
    assert abs(float(standard.mean()) - ab**0.5 * 0.8) < 0.005  # the centre is what moves the mean


def test_objective_regresses_the_residual_with_the_centred_input():
    unet = Recorder()
    model = nn.ModuleDict({"backbone": unet, "conditioner": Conditioner({"x_hat": Centre()})})
    objective = DiffusionObjective(X0Parameterization(), UniformWeighting(), DiffusionLoss())
    x0, x_hat = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    torch.manual_seed(0)
    loss = objective(model, x0, {"x_hat": x_hat}, SCHEDULE)
    torch.manual_seed(0)
    t = torch.randint(0, 1000, (6,))
    noise = torch.randn_like(x0)
    ab = SCHEDULE.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected_input = ab.sqrt() * x0 + (1 - ab.sqrt()) * x_hat + (1 - ab).sqrt() * noise
    torch.testing.assert_close(unet.calls[0][0], expected_input)
    torch.testing.assert_close(loss, (x0 - x_hat).square().mean())  # zero output vs residual target


def test_sampling_walks_the_residual_from_x_hat_and_adds_it_back():
    """ε̂ ≡ 0 makes DDIM scale the residual by sqrt(ᾱ_prev/ᾱ_t) per step, so the result is
    x̂ + r_T/sqrt(ᾱ_{T−1}) with r_T the initial noise; the network first sees r_T + x̂."""
    unet, x_hat = Recorder(), torch.randn(3, 1, 4, 4)
    conditioner = Conditioner({"x_hat": Centre()}).eval()
    out = generate_latents(backbone=unet, conditioner=conditioner, schedule=SCHEDULE,
                           parameterization=EpsParameterization(), sampler=DDIMSampler(4),
                           condition={"x_hat": x_hat}, latent_shape=(1, 4, 4), num_samples=3,
                           generator=torch.Generator().manual_seed(5))
    noise = torch.randn((3, 1, 4, 4), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(unet.calls[0][0], noise + x_hat)
    expected = x_hat + noise / SCHEDULE.alphas_cumprod[999].sqrt()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


class TowardZero(GradientGuidance):
    """log p(y | x_t) = −‖x0‖²: a gradient term that reads the (image-space) prediction."""

    name = "toward_zero"

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def bind(self, context):
        return self.log_prob

    def log_prob(self, x_t, t, x0, condition):
        return -x0.square().flatten(1).sum(1)


def test_gradient_guidance_is_refused_on_a_centred_process():
    with pytest.raises(ConfigError) as bad:
        generate_latents(backbone=Recorder(), conditioner=Conditioner({"x_hat": Centre()}).eval(),
                         schedule=SCHEDULE, parameterization=EpsParameterization(), sampler=DDIMSampler(2),
                         condition={"x_hat": torch.zeros(1, 1, 4, 4)}, latent_shape=(1, 4, 4),
                         num_samples=1, guidance=TowardZero(1.0).prepare(None))
    assert bad.value.key == "guidance"
