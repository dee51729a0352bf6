"""Semantic latents (DiffAE, LRDM, InfoDiffusion): the MMD, the InfoVAE regulariser, the semantic
encoder, the representation objective, time-dependent conditioning, and the autoencoding helpers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ldmlab.backbones.unet import UNet
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.condition_builder import build_condition
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.loss import DiffusionLoss
from ldmlab.diffusion.loss_weighting.uniform import UniformWeighting
from ldmlab.diffusion.objective import DiffusionObjective
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.schedules.scaled_linear import ScaledLinearSchedule
from ldmlab.diffusion.timestep_samplers.uniform import UniformTimesteps
from ldmlab.evaluation.inversion import smoothness
from ldmlab.sampling.generate import conditioned_model, generate_latents
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.semantic.autoencoding import mix, slerp
from ldmlab.semantic.encoder import SemanticEncoderEmbedder
from ldmlab.semantic.info_regularizer import InfoRegularizer, gaussian_kl
from ldmlab.semantic.mmd import kernel_matrix, mmd2
from ldmlab.semantic.objective import RepresentationObjective
from ldmlab.utils.errors import ConfigError

SCHEDULE = ScaledLinearSchedule()
D = 6  # semantic dim of the small test models
REG_KEY = "diffusion.objective.regularizer"


def encoder(posterior: str = "deterministic", time_conditioned: bool = False, in_channels: int = 1,
            embed_dim: int = D, seed: int = 0) -> SemanticEncoderEmbedder:
    """A small semantic encoder (two levels, 8 base channels)."""
    torch.manual_seed(seed)
    return SemanticEncoderEmbedder(in_channels, embed_dim, ch=8, ch_mult=(1, 2), num_res_blocks=1,
                                   posterior=posterior, time_conditioned=time_conditioned)


def small_unet(seed: int = 1) -> UNet:
    """conf/backbone/small.yaml, narrowed, for 1-channel inputs and a D-dim vector condition."""
    torch.manual_seed(seed)
    return UNet(in_channels=1, out_channels=1, model_channels=16, channel_mult=[1, 2], num_res_blocks=1,
                attention_resolutions=[2], num_heads=2, vector_dim=D, context_dim=None)


def model_of(embedder: SemanticEncoderEmbedder) -> nn.ModuleDict:
    return nn.ModuleDict({"backbone": small_unet(), "conditioner": Conditioner({"z_sem": embedder})})


def randomise_out_conv(unet: UNet) -> None:
    """The UNet's out conv starts at zero (output ≡ 0); give it weights so outputs carry the inputs."""
    with torch.no_grad():
        nn.init.normal_(unet.out[-1].weight, std=0.1)


def images(b: int = 4, c: int = 1, side: int = 8, seed: int = 2) -> torch.Tensor:
    return torch.randn(b, c, side, side, generator=torch.Generator().manual_seed(seed))


def objective_parts() -> dict:
    return {"parameterization": EpsParameterization(), "loss_weighting": UniformWeighting(),
            "loss": DiffusionLoss(), "timestep_sampler": UniformTimesteps()}


# --- MMD -----------------------------------------------------------------------------------


def rbf_mmd2_closed_form(shift: float, d: int, sigma: float, h: float) -> float:
    """MMD² between N(μ1, σ²I_d) and N(μ2, σ²I_d), ‖μ1 − μ2‖ = shift, for exp(−‖x − y‖²/(2h))."""
    r = (h / (h + 2 * sigma**2)) ** (d / 2)
    return 2 * r * (1 - math.exp(-shift**2 / (2 * (h + 2 * sigma**2))))


def test_rbf_mmd2_matches_the_gaussian_closed_form():
    n, d, h = 3000, 4, 2.0
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, d, generator=gen, dtype=torch.float64)
    # the estimator's spread: its first-order (Hoeffding) term, 4·(Var a/n + Var b/m) with
    # a_i = mean_{i'≠i} k(x_i, x_i') − mean_j k(x_i, y_j), b_j likewise (Gretton et al. 2012);
    # kxx, kyy do not change with the shift of y (the kernel is translation invariant)
    kxx, kyy = kernel_matrix(x, x, "rbf", h), kernel_matrix(y, y, "rbf", h)
    within_x = (kxx.sum(1) - kxx.diagonal()) / (n - 1)
    within_y = (kyy.sum(1) - kyy.diagonal()) / (n - 1)
    # same distribution: the null's spread is O(1/n) (≈1e-4 here), the shift-1 value is 0.059
    assert abs(float(mmd2(x, y, "rbf", h))) < 1e-3
    direction = torch.tensor([1.0, -1.0, 2.0, 0.5], dtype=torch.float64)
    direction = direction / direction.norm()
    for shift in (1.0, 2.0, 3.0):
        shifted = y + shift * direction
        kxy = kernel_matrix(x, shifted, "rbf", h)
        a, b = within_x - kxy.mean(1), within_y - kxy.mean(0)
        spread = math.sqrt(4 * (float(a.var()) + float(b.var())) / n)
        expected = rbf_mmd2_closed_form(shift, d, 1.0, h)
        got = float(mmd2(x, shifted, "rbf", h))
        assert abs(got - expected) < 5 * spread, (shift, got, expected, spread)
        assert 5 * spread < 0.3 * expected  # the tolerance separates e.g. a kernel with h/2 instead of h


def test_unbiased_mmd2_of_one_distribution_averages_to_zero_and_can_be_negative():
    gen = torch.Generator().manual_seed(1)
    n, d, reps = 16, 4, 1000
    values = torch.tensor([float(mmd2(torch.randn(n, d, generator=gen, dtype=torch.float64),
                                      torch.randn(n, d, generator=gen, dtype=torch.float64), "rbf", 2.0))
                           for _ in range(reps)], dtype=torch.float64)
    standard_error = float(values.std()) / math.sqrt(reps)
    assert abs(float(values.mean())) < 4 * standard_error
    assert float(values.min()) < 0.0
    # the biased (V-statistic) estimate, diagonals included, would sit 2·(1 − E k)/n above zero
    bias_of_v_statistic = 2 * (1 - (2.0 / 4.0) ** 2) / n
    assert 4 * standard_error < 0.5 * bias_of_v_statistic


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd2_grows_monotonically_with_the_shift(kernel):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(800, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(800, 4, generator=gen, dtype=torch.float64)
    values = [float(mmd2(x, y + torch.tensor([s, 0.0, 0.0, 0.0], dtype=torch.float64), kernel))
              for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(lo < hi for lo, hi in zip(values, values[1:], strict=False)), values
    assert abs(values[0]) < 0.1 * values[1]


def test_mmd2_default_scale_is_twice_the_dimension():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(20, 5, generator=gen), torch.randn(30, 5, generator=gen) + 1.0
    torch.testing.assert_close(mmd2(x, y), mmd2(x, y, "imq", 10.0))
    assert not torch.allclose(mmd2(x, y), mmd2(x, y, "imq", 5.0))


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_kernel_matrix_is_symmetric_with_unit_diagonal(kernel):
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    k = kernel_matrix(x, x, kernel, 1.5)
    assert k.shape == (40, 40)
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(k.diagonal(), torch.ones(40, dtype=torch.float64))
    assert kernel_matrix(x, x[:7], kernel, 1.5).shape == (40, 7)


def test_kernel_values_in_closed_form():
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])  # ‖x − y‖² = 25
    torch.testing.assert_close(kernel_matrix(x, y, "imq", 5.0), torch.tensor([[5.0 / 30.0]]))
    torch.testing.assert_close(kernel_matrix(x, y, "rbf", 5.0), torch.tensor([[math.exp(-2.5)]]))


def test_mmd_rejects_bad_kernels_and_shapes():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="kernel"):
        kernel_matrix(x, x, "gaussian", 1.0)
    with pytest.raises(ValueError, match="kernel"):
        mmd2(x, x, "laplace")
    for a, b in ((x[:, 0], x), (x, torch.randn(4, 2)), (x[None], x)):
        with pytest.raises(ValueError, match=r"\(N, d\)"):
            mmd2(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(x[:1], x)


# --- the InfoVAE regulariser ----------------------------------------------------------------


def posterior_sample(b: int = 16, d: int = 8, seed: int = 5) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(b, d, generator=gen)
    logvar = torch.randn(b, d, generator=gen) * 0.5
    z = mean + (0.5 * logvar).exp() * torch.randn(b, d, generator=gen)
    return mean, logvar, z


def test_gaussian_kl_matches_torch_distributions():
    mean, logvar, _ = posterior_sample()
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, (0.5 * logvar).exp()),
        torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))).sum(1)
    torch.testing.assert_close(gaussian_kl(mean, logvar), expected)
    assert torch.all(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)) == 0)


def test_neutral_weights_give_the_vae_term_without_touching_the_rng():
    mean, logvar, z = posterior_sample()
    regularizer = InfoRegularizer(weight=0.3, mi_weight=0.0, prior_weight=1.0)
    state = torch.get_rng_state()
    value = regularizer(mean, logvar, z)
    assert torch.equal(torch.get_rng_state(), state)
    assert regularizer.needs_kl
    torch.testing.assert_close(value, 0.3 * gaussian_kl(mean, logvar).mean())


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mi_weight_one_leaves_the_weighted_mmd_against_prior_draws(kernel):
    mean, _, z = posterior_sample()
    regularizer = InfoRegularizer(weight=0.2, mi_weight=1.0, prior_weight=7.0, kernel=kernel)
    assert not regularizer.needs_kl
    torch.manual_seed(11)
    value = regularizer(mean, None, z)  # no KL: a deterministic posterior is fine
    torch.manual_seed(11)
    expected = 0.2 * 7.0 * mmd2(z, torch.randn_like(z), kernel)
    torch.testing.assert_close(value, expected)
    assert float(value) != 0.0


@pytest.mark.parametrize(("alpha", "lam"), [(0.5, 1.0), (0.25, 3.0), (-1.0, 2.5)])
def test_general_weights_mix_kl_and_mmd(alpha, lam):
    mean, logvar, z = posterior_sample()
    regularizer = InfoRegularizer(weight=0.4, mi_weight=alpha, prior_weight=lam)
    torch.manual_seed(12)
    value = regularizer(mean, logvar, z)
    torch.manual_seed(12)
    expected = 0.4 * ((1 - alpha) * gaussian_kl(mean, logvar).mean()
                      + (alpha + lam - 1) * mmd2(z, torch.randn_like(z), "imq"))
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("batch", [8, 64])  # 64: cdist's matmul path
def test_regularizer_gradients_are_finite(batch):
    mean, logvar, z = posterior_sample(b=batch)
    mean, logvar = mean.requires_grad_(), logvar.requires_grad_()
    z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    InfoRegularizer(weight=1.0, mi_weight=0.5, prior_weight=2.0)(mean, logvar, z).backward()
    for grad in (mean.grad, logvar.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_kl_term_of_a_deterministic_posterior_names_mi_weight():
    mean, _, z = posterior_sample()
    with pytest.raises(ConfigError) as bad:
        InfoRegularizer(weight=1e-3, mi_weight=0.5, prior_weight=1.0)(mean, None, z)
    assert bad.value.key == f"{REG_KEY}.mi_weight"


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"weight": -1e-3}, "weight"),
    ({"mi_weight": 1.5}, "mi_weight"),
    ({"mi_weight": 0.0, "prior_weight": 0.5}, "prior_weight"),
    ({"mi_weight": 0.5, "prior_weight": 0.25}, "prior_weight"),
    ({"kernel": "gaussian"}, "kernel"),
])
def test_regularizer_rejects_out_of_range_weights(kwargs, name):
    with pytest.raises(ConfigError) as bad:
        InfoRegularizer(**{"weight": 1e-3, **kwargs})
    assert bad.value.key == f"{REG_KEY}.{name}"


def test_boundary_weights_are_accepted():
    InfoRegularizer(weight=0.0, mi_weight=1.0, prior_weight=0.0)  # α + λ − 1 = 0: no term at all
    InfoRegularizer(weight=1.0, mi_weight=0.5, prior_weight=0.5, kernel="rbf")


# --- the semantic encoder ---------------------------------------------------------------------


@pytest.mark.parametrize("posterior", ["deterministic", "gaussian"])
def test_encoder_shapes(posterior):
    embedder = encoder(posterior, in_channels=3)
    x = images(b=4, c=3, side=32)
    mean, logvar = embedder.posterior(x)
    assert mean.shape == (4, D)
    assert logvar is None if posterior == "deterministic" else logvar.shape == (4, D)
    assert embedder.output_type == "vector" and embedder.null(5).shape == (5, D)
    z = embedder.eval().inputs({"image": x})
    assert embedder(z).shape == (4, D)
    with pytest.raises(ValueError, match="z_sem must be"):
        embedder(torch.randn(4, D + 1))
    with pytest.raises(ValueError, match="in_channels|shape"):
        embedder.posterior(images(b=4, c=1, side=32))


def test_deterministic_encoder_gives_its_mean_in_training_too():
    embedder = encoder("deterministic").train()
    x = images()
    mean, _ = embedder.posterior(x)
    torch.testing.assert_close(embedder.inputs({"image": x}), mean)


def test_gaussian_encoder_mean_in_eval_and_posterior_draws_in_training():
    embedder = encoder("gaussian")
    with torch.no_grad():
        embedder.head.bias[D:].fill_(-1.0)  # σ² ≈ e^-1: a clear spread
        x = images(b=1).expand(4000, -1, -1, -1)
        mean, logvar = embedder.posterior(x)
        assert torch.equal(embedder.eval().inputs({"image": x}), mean)
        torch.manual_seed(13)
        drawn = embedder.train().inputs({"image": x})
    assert not torch.allclose(drawn, mean)
    sigma = (0.5 * logvar[0]).exp()
    # per dimension: the sample mean is within 5 standard errors, the sample std within 10 %
    assert torch.all((drawn.mean(0) - mean[0]).abs() < 5 * sigma / math.sqrt(len(x)))
    torch.testing.assert_close(drawn.std(0), sigma, rtol=0.1, atol=0.0)


@pytest.mark.parametrize("posterior", ["deterministic", "gaussian"])
def test_given_latents_win_over_the_image(posterior):
    embedder = encoder(posterior).train()
    z = torch.randn(4, D)
    assert embedder.inputs({"z_sem": z, "image": images()}) is z
    assert embedder.inputs({}) is None


def test_time_conditioned_posterior_depends_on_t_and_needs_it():
    embedder = encoder("gaussian", time_conditioned=True).eval()
    x = images()
    mean_early, _ = embedder.posterior(x, torch.full((4,), 10))
    mean_late, _ = embedder.posterior(x, torch.full((4,), 900))
    assert not torch.allclose(mean_early, mean_late)
    torch.testing.assert_close(embedder.inputs({"image": x, "t": torch.full((4,), 10)}), mean_early)
    with pytest.raises(ValueError, match="time-conditioned"):
        embedder.posterior(x)
    with pytest.raises(ValueError, match="time-conditioned"):
        embedder.inputs({"image": x})


def test_untimed_encoder_ignores_t():
    embedder = encoder("gaussian").eval()
    x = images()
    torch.testing.assert_close(embedder.posterior(x, torch.full((4,), 900))[0], embedder.posterior(x)[0])


def test_draw_is_the_standard_normal_prior_for_gaussian_and_none_for_deterministic():
    n = 20000
    gaussian = encoder("gaussian")
    state = torch.get_rng_state()
    z = gaussian.draw(n)
    assert torch.equal(torch.get_rng_state(), state)  # its own generator, seed 0
    assert torch.equal(z, encoder("gaussian", seed=9).draw(n))
    assert z.shape == (n, D)
    assert torch.all(z.mean(0).abs() < 5 / math.sqrt(n))
    torch.testing.assert_close(torch.cov(z.T), torch.eye(D), rtol=0.0, atol=5 * math.sqrt(2 / n))
    assert encoder("deterministic").draw(n) is None


def test_prior_sampling_switches_the_prior_draw_on_and_off():
    kwargs = {"in_channels": 1, "embed_dim": D, "ch": 8, "ch_mult": (1,)}
    mmd_regularised = SemanticEncoderEmbedder(**kwargs, posterior="deterministic", prior_sampling=True)
    assert torch.equal(mmd_regularised.draw(4), torch.randn(4, D, generator=torch.Generator().manual_seed(0)))
    assert SemanticEncoderEmbedder(**kwargs, posterior="gaussian", prior_sampling=False).draw(4) is None


@pytest.mark.parametrize(("kwargs", "key"), [({"posterior": "laplace"}, "posterior"),
                                               ({"embed_dim": 0}, "embed_dim")])
def test_encoder_rejects_bad_settings(kwargs, key):
    with pytest.raises(ConfigError) as bad:
        SemanticEncoderEmbedder(**{"in_channels": 1, "embed_dim": D, "ch": 8, "ch_mult": (1,), **kwargs})
    assert bad.value.key == f"conditioner.embedders.z_sem.{key}"


# --- gradients through the denoising loss ----------------------------------------------------


def grads_after_one_step(model: nn.ModuleDict, objective: nn.Module, x0: torch.Tensor) -> None:
    """One Adam step (so the UNet's zero-initialised out conv carries gradients upstream), then a
    second backward; leaves that backward's grads on the parameters."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    objective(model, x0, {"image": x0}, SCHEDULE).backward()
    optimizer.step()
    assert model["backbone"].out[-1].weight.abs().sum() > 0
    optimizer.zero_grad()
    torch.manual_seed(1)
    objective(model, x0, {"image": x0}, SCHEDULE).backward()


def nonzero_grad(module: nn.Module) -> bool:
    grads = [p.grad for p in module.parameters()]
    finite = all(g is not None and torch.isfinite(g).all() for g in grads)
    return finite and any(g.abs().sum() > 0 for g in grads)


def test_deterministic_encoder_learns_through_the_denoising_loss():
    embedder = encoder("deterministic")
    model = model_of(embedder)
    grads_after_one_step(model, DiffusionObjective(**objective_parts()), images(b=4))
    assert nonzero_grad(embedder.conv_in) and nonzero_grad(embedder.head)


def test_gaussian_time_conditioned_encoder_learns_through_the_denoising_loss():
    embedder = encoder("gaussian", time_conditioned=True)
    model = model_of(embedder)
    objective = RepresentationObjective(**objective_parts(), regularizer=InfoRegularizer(weight=0.0))
    grads_after_one_step(model, objective, images(b=4))  # weight 0: only the denoising loss reaches it
    assert nonzero_grad(embedder.conv_in) and nonzero_grad(embedder.head)
    assert embedder.head.weight.grad[D:].abs().sum() > 0  # log σ² too, through z = μ + σ·ε
    assert nonzero_grad(embedder.time_embed)


def test_mmd_only_regulariser_trains_a_deterministic_encoder_directly():
    embedder = encoder("deterministic")
    model = model_of(embedder).train()  # out conv still zero: the denoising loss gives the encoder nothing
    objective = RepresentationObjective(
        **objective_parts(), regularizer=InfoRegularizer(weight=1.0, mi_weight=1.0, prior_weight=1.0))
    x0 = images(b=8)
    torch.manual_seed(0)
    objective(model, x0, {"image": x0}, SCHEDULE).backward()
    assert nonzero_grad(embedder.head) and nonzero_grad(embedder.conv_in)


def test_time_conditioned_encoder_needs_the_representation_objective():
    model = model_of(encoder("gaussian", time_conditioned=True)).train()
    with pytest.raises(ValueError, match="diffusion/objective=representation"):
        DiffusionObjective(**objective_parts())(model, images(), {"image": images()}, SCHEDULE)


# --- the representation objective ----------------------------------------------------------------


def test_weight_zero_deterministic_objective_equals_the_plain_objective():
    model = model_of(encoder("deterministic")).train()
    randomise_out_conv(model["backbone"])
    x0 = images(b=4)
    plain = DiffusionObjective(**objective_parts())
    representation = RepresentationObjective(**objective_parts(), regularizer=InfoRegularizer(weight=0.0))
    losses = []
    for objective in (plain, representation):
        torch.manual_seed(0)
        losses.append(objective(model, x0, {"image": x0}, SCHEDULE))
    torch.testing.assert_close(losses[1], losses[0])
    torch.manual_seed(1)
    assert not torch.allclose(representation(model, x0, {"image": x0}, SCHEDULE), losses[0])


@pytest.mark.parametrize("time_conditioned", [False, True])
def test_regularised_objective_adds_the_kl_of_the_same_posterior(time_conditioned):
    embedder = encoder("gaussian", time_conditioned=time_conditioned)
    model = model_of(embedder).train()
    randomise_out_conv(model["backbone"])
    x0 = images(b=4)
    weight = 0.5
    losses = {}
    for w in (0.0, weight):
        objective = RepresentationObjective(**objective_parts(), regularizer=InfoRegularizer(weight=w))
        torch.manual_seed(0)
        losses[w] = objective(model, x0, {"image": x0}, SCHEDULE)
    torch.manual_seed(0)
    t = UniformTimesteps()(len(x0), SCHEDULE, x0.device)  # the objective's first draw
    with torch.no_grad():
        mean, logvar = embedder.posterior(x0, t if time_conditioned else None)
    kl = weight * gaussian_kl(mean, logvar).mean()
    assert float(kl) > 1e-3
    torch.testing.assert_close(losses[weight] - losses[0.0], kl, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("time_conditioned", [False, True])
def test_gaussian_objective_draws_t_then_the_posterior_then_the_noise(time_conditioned):
    embedder = encoder("gaussian", time_conditioned=time_conditioned)
    model = model_of(embedder).train()
    randomise_out_conv(model["backbone"])
    x0 = images(b=4)
    objective = RepresentationObjective(**objective_parts(), regularizer=InfoRegularizer(weight=0.0))
    torch.manual_seed(0)
    loss = objective(model, x0, {"image": x0}, SCHEDULE)
    # by hand, in the documented order: t, the posterior's ε, the forward process's ε, the dropout
    torch.manual_seed(0)
    t = UniformTimesteps()(len(x0), SCHEDULE, x0.device)
    mean, logvar = embedder.posterior(x0, t if time_conditioned else None)
    z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    noise = torch.randn_like(x0)
    output = model["backbone"](SCHEDULE.q_sample(x0, t, noise), t, model["conditioner"]({"z_sem": z}))
    torch.testing.assert_close(loss, (output - noise).square().mean())
    torch.testing.assert_close(model["conditioner"]({"z_sem": z})["vector"], z)  # p_uncond 0: no drop
    assert not torch.allclose(z, mean)


def test_deterministic_encoder_with_a_kl_term_is_refused():
    model = model_of(encoder("deterministic")).train()
    objective = RepresentationObjective(**objective_parts(), regularizer=InfoRegularizer(weight=1e-3))
    with pytest.raises(ConfigError) as bad:
        objective(model, images(), {"image": images()}, SCHEDULE)
    assert bad.value.key == f"{REG_KEY}.mi_weight"


@pytest.mark.parametrize("embedders", [
    {"z_sem": "semantic"},
    {"label": "class"},  # an embedder under the name that is no semantic encoder
])
def test_objective_without_its_encoder_names_the_key(embedders):
    built = {name: encoder() if kind == "semantic" else ClassEmbedder(3, D, output_type="vector")
             for name, kind in embedders.items()}
    model = nn.ModuleDict({"backbone": small_unet(), "conditioner": Conditioner(built)}).train()
    name = "label" if "label" in built else "semantic"
    objective = RepresentationObjective(**objective_parts(), regularizer=InfoRegularizer(), encoder=name)
    with pytest.raises(ConfigError) as bad:
        objective(model, images(), {"image": images(), "label": torch.zeros(4, dtype=torch.long)}, SCHEDULE)
    assert bad.value.key == "diffusion.objective.encoder"


# --- time-dependent conditioning at generation -------------------------------------------------


def test_conditioner_is_time_dependent_only_with_a_time_conditioned_embedder():
    assert not Conditioner({}).time_dependent
    assert not Conditioner({"label": ClassEmbedder(3, 8)}).time_dependent
    assert not Conditioner({"z_sem": encoder("gaussian")}).time_dependent
    assert Conditioner({"z_sem": encoder("deterministic", time_conditioned=True)}).time_dependent
    assert Conditioner({"label": ClassEmbedder(3, D, output_type="vector"),
                        "z_sem": encoder("gaussian", time_conditioned=True)}).time_dependent


def test_conditioned_model_is_the_unet_itself_without_time_dependence():
    unet, conditioner = small_unet(), Conditioner({"z_sem": encoder("gaussian")}).eval()
    assert conditioned_model(unet, conditioner, {"image": images()}) is unet
    assert conditioned_model(unet, conditioner, {"image": images()}, guided=True) is unet


def test_conditioned_model_re_encodes_the_condition_at_every_step():
    unet = small_unet().eval()
    randomise_out_conv(unet)
    conditioner = Conditioner({"z_sem": encoder("gaussian", time_conditioned=True)}).eval()
    condition = {"image": images(b=2)}
    model = conditioned_model(unet, conditioner, condition)
    assert model is not unet
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    t_a, t_b = torch.full((2,), 50), torch.full((2,), 700)
    with torch.no_grad():
        out_a = model(x, t_a, {"vector": torch.zeros(2, D)})  # the precomputed cond is ignored
        torch.testing.assert_close(out_a, unet(x, t_a, conditioner({**condition, "t": t_a})))
        # the condition itself moves with t: the UNet at t_a with t_b's encoding differs
        assert not torch.allclose(out_a, unet(x, t_a, conditioner({**condition, "t": t_b})))
        assert not torch.allclose(out_a, model(x, t_b, {}))


def test_guidance_with_a_time_dependent_conditioner_is_refused():
    conditioner = Conditioner({"z_sem": encoder("gaussian", time_conditioned=True)})
    with pytest.raises(ConfigError) as bad:
        conditioned_model(small_unet(), conditioner, {"image": images()}, guided=True)
    assert bad.value.key == "guidance"


def test_generation_from_source_images_with_a_time_conditioned_deterministic_encoder():
    conditioner = Conditioner({"z_sem": encoder("deterministic", time_conditioned=True)}).eval()
    condition = build_condition(conditioner, 2, source=[{"image": images(b=1)[0]}] * 2)
    latents = generate_latents(small_unet().eval(), conditioner, SCHEDULE, EpsParameterization(),
                               DDIMSampler(steps=2), condition, (1, 8, 8), 2)
    assert latents.shape == (2, 1, 8, 8)


# --- the condition builder with a semantic encoder -----------------------------------------------


def test_gaussian_semantic_condition_is_the_prior_draw():
    conditioner = Conditioner({"z_sem": encoder("gaussian")})
    condition = build_condition(conditioner, 5, source=[{"image": images(b=1)[0]}])
    assert set(condition) == {"z_sem"}
    assert torch.equal(condition["z_sem"], torch.randn(5, D, generator=torch.Generator().manual_seed(0)))


def test_deterministic_semantic_condition_takes_the_source_images():
    conditioner = Conditioner({"z_sem": encoder("deterministic")})
    pictures = images(b=3)
    condition = build_condition(conditioner, 5, source=[{"image": p, "label": 0} for p in pictures])
    assert set(condition) == {"image"}
    assert torch.equal(condition["image"], pictures[[0, 1, 2, 0, 1]])
    from_batch = build_condition(conditioner, 2, source={"image": pictures})
    assert torch.equal(from_batch["image"], pictures[:2])


def test_deterministic_semantic_condition_without_source_uses_the_null():
    embedder = encoder("deterministic")
    conditioner = Conditioner({"z_sem": embedder}).eval()
    condition = build_condition(conditioner, 3)
    assert condition == {}
    torch.testing.assert_close(conditioner(condition, batch_size=3)["vector"], embedder.null(3))


# --- autoencoding: slerp, mix, smoothness ------------------------------------------------------------


def test_slerp_hits_the_endpoints_exactly():
    gen = torch.Generator().manual_seed(6)
    a, b = torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.equal(slerp(a, b, 1.0), b)
    assert slerp(a, b, 0.3).shape == a.shape and slerp(a, b, 0.3).dtype == a.dtype


@pytest.mark.parametrize("weight", [0.25, 0.5, 0.8])
def test_slerp_keeps_the_norm_between_orthogonal_equal_norm_inputs(weight):
    a = torch.zeros(2, 8, dtype=torch.float64)
    b = torch.zeros(2, 8, dtype=torch.float64)
    a[:, 0], b[:, 1] = 3.0, 3.0
    a[1, :2], b[1, :2] = torch.tensor([3.0, 3.0]), torch.tensor([3.0, -3.0])  # also orthogonal
    out = slerp(a, b, weight)
    torch.testing.assert_close(out.norm(dim=1), a.norm(dim=1))
    # closed form: cos(wπ/2)·a + sin(wπ/2)·b
    expected = math.cos(weight * math.pi / 2) * a + math.sin(weight * math.pi / 2) * b
    torch.testing.assert_close(out, expected)
    if weight == 0.5:
        assert not torch.allclose(out.norm(dim=1), torch.lerp(a, b, 0.5).norm(dim=1))


def test_slerp_falls_back_to_lerp_for_parallel_inputs_per_sample():
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(2, 5, generator=gen)
    b = torch.stack([2.0 * a[0], torch.randn(5, generator=gen)])  # row 0 parallel, row 1 not
    out = slerp(a, b, 0.3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], torch.lerp(a[0], b[0], 0.3))
    assert not torch.allclose(out[1], torch.lerp(a[1], b[1], 0.3))


def test_mix_lerps_floats_ors_masks_and_follows_t():
    def cond_at(offset: float, mask: list[bool]):
        return lambda t: {"vector": t[:, None].float() + offset,
                          "crossattn_mask": torch.tensor([mask] * len(t))}

    mixed = mix(cond_at(0.0, [True, False, False]), cond_at(10.0, [False, True, False]), 0.25)
    for step in (3, 40):
        t = torch.full((2,), step)
        out = mixed(t)
        torch.testing.assert_close(out["vector"], torch.full((2, 1), step + 2.5))
        assert out["crossattn_mask"].tolist() == [[True, True, False]] * 2
        assert out["crossattn_mask"].dtype == torch.bool


def mean_abs_difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().flatten(1).mean(1)


def test_smoothness_of_an_even_path_in_closed_form():
    gen = torch.Generator().manual_seed(8)
    p, frames = 3, 6
    a, b = torch.randn(p, 1, 4, 4, generator=gen, dtype=torch.float64), torch.randn(p, 1, 4, 4, generator=gen,
                                                                                    dtype=torch.float64)
    weights = torch.linspace(0, 1, frames, dtype=torch.float64).view(1, frames, 1, 1, 1)
    strips = a[:, None] + weights * (b - a)[:, None]  # (P, F, C, H, W), linear in w
    scores = smoothness(strips, mean_abs_difference)
    expected = float(mean_abs_difference(a, b).mean()) / (frames - 1)
    assert scores["neighbour_mean"] == pytest.approx(expected, rel=1e-9)
    assert scores["neighbour_std"] == pytest.approx(0.0, abs=1e-9)
    assert scores["max_over_mean"] == pytest.approx(1.0, rel=1e-9)


def test_smoothness_of_a_path_with_one_jump_averages_over_strips():
    frames = 5
    # strip 0: even steps of 0.5 (from 0 to 2); strip 1: 0.1, 0.1, 0.7, 0.1 (from 0 to 1)
    steps = torch.tensor([[0.0, 0.5, 1.0, 1.5, 2.0], [0.0, 0.1, 0.2, 0.9, 1.0]], dtype=torch.float64)
    strips = steps.view(2, frames, 1, 1, 1).expand(2, frames, 1, 2, 2)
    scores = smoothness(strips, mean_abs_difference)
    assert scores["neighbour_mean"] == pytest.approx((0.5 + 0.25) / 2)
    jump_std = float(torch.tensor([0.1, 0.1, 0.7, 0.1], dtype=torch.float64).std())
    assert scores["neighbour_std"] == pytest.approx(jump_std / 2, rel=1e-9)
    assert scores["max_over_mean"] == pytest.approx((1.0 + 0.7 / 0.25) / 2)
