"""Gradient guidance: the DDIM score form and the DDPM mean shift against closed forms,
classifier guidance (sign, scale 0 bit-exact, compatibility checks, refused on continuous processes)
and compositions."""

from __future__ import annotations

import math

import pytest
import torch

from ldmlab.classifier.noisy_loading import NoisyClassifierCheckpoint
from ldmlab.classifier.noisy_network import NoisyLatentClassifier
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.parameterizations.velocity import VelocityParameterization
from ldmlab.diffusion.schedules.flow import FlowSchedule
from ldmlab.diffusion.schedules.linear import LinearSchedule
from ldmlab.guidance.base import BoundGuidance, GradientGuidance, GradientTerm, GuidanceContext
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.guidance.classifier import ClassifierGuidance
from ldmlab.guidance.composite import CompositeGuidance
from ldmlab.guidance.none import NoGuidance
from ldmlab.models.restore import load_ldm, resolve_ldm_checkpoint
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.generate import generate_latents
from ldmlab.sampling.samplers.base import ScoreForm
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.sampling.samplers.ddpm import DDPMSampler, MeanShiftForm
from ldmlab.sampling.samplers.dpmpp_2m import DPMPP2MSampler
from ldmlab.utils.errors import ConfigError

SCHEDULE = LinearSchedule()
MEAN = torch.tensor([1.5, -0.5])[None, :, None, None]
TAU2 = 0.7


class GaussianLikelihood(GradientGuidance):
    """log p(y | x_t) = −‖x_t − m‖²/(2τ²): ∇ = (m − x_t)/τ², known in closed form."""

    name = "gaussian"

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def bind(self, context):
        return self.log_prob

    def log_prob(self, x_t, t, x0, condition):
        return -((x_t - MEAN) ** 2).sum(dim=(1, 2, 3)) / (2 * TAU2)


def gaussian_data_model(x_t, t, cond):
    """The exact ε-prediction for data x0 ~ N(0, I): x_t ~ N(0, I), ε̂ = sqrt(1 − ᾱ_t)·x_t."""
    return SCHEDULE.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1) * x_t


def guided(scale: float, form) -> GuidedDenoiser:
    return GuidedDenoiser(
        gaussian_data_model, EpsParameterization(), SCHEDULE, {}, None,
        GaussianLikelihood(scale).prepare(None), {}, form
    )


def test_score_form_matches_the_closed_form_guided_score():
    x_t, t = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.tensor([0, 100, 500, 999])
    scale = 2.5
    x0, eps = guided(scale, ScoreForm(SCHEDULE))(x_t, t)
    alpha_bar = SCHEDULE.alphas_cumprod.double()[t].view(-1, 1, 1, 1)
    sigma = (1 - alpha_bar).sqrt()
    # guided score = score of N(0, I) + s·∇ log p = −x_t + s·(m − x_t)/τ²; ε̂ = −σ·score
    expected_eps = -sigma * (-x_t + scale * (MEAN - x_t) / TAU2)
    torch.testing.assert_close(eps, expected_eps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x0, (x_t - sigma * expected_eps) / alpha_bar.sqrt(), rtol=1e-5, atol=1e-5)


def test_ddpm_mean_shift_is_scale_times_variance_times_gradient():
    sampler = DDPMSampler(steps=10)
    x_t = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    scale = 1.7
    for step in sampler.transitions(SCHEDULE):
        t = torch.full((3,), step.t)
        steps = []
        for denoise in (guided(0.0, None), guided(scale, MeanShiftForm(sampler, SCHEDULE))):
            x0, eps = denoise(x_t, t)
            generator = torch.Generator().manual_seed(step.index)
            steps.append(sampler.step(x_t, x0, eps, step, None, generator))
        variance = sampler.step_variance(step.alpha_bar, step.alpha_bar_prev)
        torch.testing.assert_close(
            steps[1] - steps[0], scale * variance * (MEAN - x_t) / TAU2, rtol=1e-4, atol=1e-7
        )


def test_each_sampler_declares_its_gradient_form():
    assert isinstance(DDPMSampler(steps=5).gradient_form(SCHEDULE), MeanShiftForm)
    for sampler in (DDIMSampler(steps=5), DDIMSampler(steps=5, eta=1.0), DPMPP2MSampler(steps=5)):
        assert isinstance(sampler.gradient_form(SCHEDULE), ScoreForm)


def test_scale_zero_term_is_skipped_and_the_network_is_not_differentiated():
    x_t, t = torch.randn(2, 2, 3, 3), torch.tensor([10, 900])
    plain = GuidedDenoiser(gaussian_data_model, EpsParameterization(), SCHEDULE, {})(x_t, t)
    off = guided(0.0, ScoreForm(SCHEDULE))(x_t, t)
    assert all(torch.equal(a, b) for a, b in zip(plain, off, strict=True))


@pytest.fixture(scope="module")
def ldm(tiny_ldm_run):
    return load_ldm(resolve_ldm_checkpoint(str(tiny_ldm_run / "train_ldm" / "latest"), ""))


def noisy_classifier(module, **changes) -> NoisyClassifierCheckpoint:
    """A (randomly initialised, real) noisy-latent classifier matching ``module`` unless changed."""
    torch.manual_seed(3)
    latent = module.resolution // module.first_stage.downsample_factor
    shape = changes.pop("latent_shape", (module.first_stage.embed_dim, latent, latent))
    network = NoisyLatentClassifier(
        shape[0],
        changes.pop("num_classes", 10),
        model_channels=16,
        channel_mult=(1, 2),
        attention_resolutions=(2,),
        num_heads=2,
        pool_heads=2,
    )
    fields = {
        "network": network.eval().requires_grad_(False),
        "num_classes": network.num_classes,
        "latent_shape": shape,
        "scale_factor": float(module.first_stage.scale_factor),
        "first_stage_fingerprint": module.first_stage.fingerprint(),
        "alphas_cumprod": module.schedule.alphas_cumprod.double(),
    }
    return NoisyClassifierCheckpoint(**(fields | changes))


def sample(module, guidance, labels, sampler, seed=0):
    condition = {"label": labels}
    return module.generate(
        condition,
        len(labels),
        guidance=guidance,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize("sampler", [DDIMSampler(steps=4), DDPMSampler(steps=4), DPMPP2MSampler(steps=4)])
def test_classifier_scale_zero_reproduces_the_unguided_sample_bit_exactly(ldm, sampler):
    labels = torch.tensor([0, 3, 7])
    classifier = ClassifierGuidance(scale=0.0, classifier=noisy_classifier(ldm))
    plain = sample(ldm, None, labels, sampler)
    assert torch.equal(sample(ldm, classifier, labels, sampler), plain)
    composite = CompositeGuidance(
        {"cfg": ClassifierFreeGuidance(2.0), "classifier": classifier}, "classifier"
    )
    assert torch.equal(
        sample(ldm, composite, labels, sampler), sample(ldm, ClassifierFreeGuidance(2.0), labels, sampler)
    )
    assert not torch.equal(sample(ldm, classifier.with_scale(5.0), labels, sampler), plain)


def test_classifier_gradient_raises_log_p_of_the_target_class(ldm):
    guidance = ClassifierGuidance(scale=1.0, classifier=noisy_classifier(ldm))
    latent = ldm.resolution // ldm.first_stage.downsample_factor
    bound = guidance.prepare(
        GuidanceContext(
            ldm.first_stage,
            ldm.schedule,
            (ldm.first_stage.embed_dim, latent, latent),
            ldm.model["conditioner"],
        )
    )
    torch.manual_seed(0)
    x_t = torch.randn(6, ldm.first_stage.embed_dim, latent, latent)
    t, labels = torch.full((6,), 400), torch.arange(6)
    cond = ldm.ema.shadow["conditioner"].eval()({"label": labels})
    unet = ldm.ema.shadow["backbone"].eval()
    denoisers = [
        GuidedDenoiser(
            unet,
            ldm.parameterization,
            ldm.schedule,
            cond,
            None,
            g,
            {"label": labels},
            ScoreForm(ldm.schedule),
        )
        for g in (None, bound)
    ]
    step = DDIMSampler(steps=10).transitions(ldm.schedule)[6]
    t = torch.full((6,), step.t)
    with torch.no_grad():
        moved = [DDIMSampler(steps=10).step(x_t, *d(x_t, t), step, None, None) for d in denoisers]
        log_p = [bound.gradients[0].log_prob(x, t, None, {"label": labels}) for x in moved]
    assert bool((log_p[1] > log_p[0]).all()), (log_p[0], log_p[1])


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"latent_shape": (4, 4, 4)}, "classifies latents"),
        ({"first_stage_fingerprint": "0" * 16}, "another first stage"),
        ({"scale_factor": 123.0}, "latents scaled by"),
        ({"alphas_cumprod": LinearSchedule(num_timesteps=500).alphas_cumprod.double()}, "noise schedule"),
        ({"num_classes": 7}, "has 7 classes"),
    ],
)
def test_classifier_of_another_model_is_refused_with_one_line(ldm, changes, problem):
    if "latent_shape" in changes:
        changes["latent_shape"] = (ldm.first_stage.embed_dim + 1, 8, 8)
    guidance = ClassifierGuidance(classifier=noisy_classifier(ldm, **changes))
    with pytest.raises(
        ConfigError, match=rf"guidance\.classifier_ckpt: .*{problem}.*make train-noisy-classifier"
    ):
        sample(ldm, guidance, torch.tensor([1]), DDIMSampler(steps=2))


def test_composition_orders_terms_and_sweeps_the_named_one():
    cfg, gauss = ClassifierFreeGuidance(3.0), GaussianLikelihood(1.0)
    composite = CompositeGuidance({"gauss": gauss, "cfg": cfg}, sweep="gauss")
    assert composite.terms() == [cfg, gauss] and composite.name == "gauss+cfg"
    swept = composite.with_scale(4.0)
    assert swept.scale == 4.0 and swept.members["cfg"].scale == 3.0 and composite.scale == 1.0
    assert (
        CompositeGuidance({"cfg": cfg, "gauss": gauss}, sweep="cfg").with_scale(2.0).members["cfg"].scale
        == 2.0
    )
    with pytest.raises(ConfigError, match="guidance.sweep"):
        CompositeGuidance({"cfg": cfg}, sweep="classifier")
    with pytest.raises(ConfigError, match="guidance.terms"):
        CompositeGuidance({"a": cfg, "b": ClassifierFreeGuidance(2.0)}, sweep="a")


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_negative_or_non_finite_scales_are_refused(bad):
    for guidance in (ClassifierFreeGuidance(), GaussianLikelihood(1.0)):
        with pytest.raises(ConfigError, match=r"guidance\.scale"):
            guidance.with_scale(bad)
    with pytest.raises(ConfigError, match=r"^guidance: .*no guidance scale"):
        NoGuidance().with_scale(2.0)


def test_cfg_on_an_unconditional_model_is_refused(ldm):
    latent = ldm.resolution // ldm.first_stage.downsample_factor
    context = GuidanceContext(
        ldm.first_stage, ldm.schedule, (4, latent, latent), type(ldm.model["conditioner"])()
    )
    ClassifierFreeGuidance(1.0).prepare(context)
    with pytest.raises(ConfigError, match=r"guidance\.scale: .*unconditional"):
        ClassifierFreeGuidance(3.0).prepare(context)


def test_classifier_guidance_on_a_continuous_process_is_refused_with_one_line(ldm):
    latent = ldm.resolution // ldm.first_stage.downsample_factor
    context = GuidanceContext(ldm.first_stage, FlowSchedule(), (ldm.first_stage.embed_dim, latent, latent),
                              ldm.model["conditioner"])
    with pytest.raises(ConfigError, match=r"^guidance\.classifier_ckpt: .*process is continuous "
                       r"\(FlowSchedule\).*Fix: guide it with guidance=cfg, guidance=interval or "
                       r"guidance=autoguidance$"):
        ClassifierGuidance(classifier=noisy_classifier(ldm)).prepare(context)


def test_gradient_guidance_on_a_continuous_process_is_refused_before_sampling():
    class Conditioner:  # an unconditional model: no cond, no centre
        time_dependent = False

        def __call__(self, condition, batch_size=None):
            return {}

        def forward_centre(self, condition):
            return None

    def never(*args):
        raise AssertionError("the network must not run")

    bound = BoundGuidance(gradients=(GradientTerm(1.0, False, never),))
    with pytest.raises(ConfigError, match=r"^guidance: gradient guidance .* process is continuous"):
        generate_latents(never, Conditioner(), FlowSchedule(), VelocityParameterization(),
                         DDIMSampler(steps=2), {}, (1, 2, 2), 1, guidance=bound)
