"""Patch discriminator shapes/init/receptive field and the adversarial loss functions."""

import math

import pytest
import torch
from torch import nn

from ldmlab.autoencoder.adversarial import (
    adaptive_weight,
    disc_factor,
    discriminator_loss,
    generator_loss,
)
from ldmlab.autoencoder.discriminator import NLayerDiscriminator


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(
    ("size", "n_layers", "out_size"), [(32, 3, 2), (64, 3, 6), (32, 2, 6), (32, 1, 14)]
)
def test_output_shape(size: int, n_layers: int, out_size: int) -> None:
    disc = NLayerDiscriminator(in_channels=3, base_channels=8, n_layers=n_layers)
    assert disc(torch.randn(2, 3, size, size)).shape == (2, 1, out_size, out_size)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_norm_variants_run_and_give_gradients(norm: str) -> None:
    disc = NLayerDiscriminator(in_channels=1, base_channels=8, n_layers=2, norm=norm)
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    disc(x).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    has_bias = [m.bias is not None for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert has_bias[1:-1] == [norm == "none"] * 2  # inner convs drop the bias before a norm


def test_init_statistics() -> None:
    torch.manual_seed(0)
    disc = NLayerDiscriminator(in_channels=3, base_channels=64, n_layers=3, norm="batch")
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in disc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 5 and len(norms) == 3
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.mean().item()) < 1e-3 and weights.std().item() == pytest.approx(0.02, rel=0.01)
    assert all(torch.all(m.bias == 0) for m in convs if m.bias is not None)
    gammas = torch.cat([m.weight for m in norms])
    assert gammas.mean().item() == pytest.approx(1.0, abs=0.005)
    assert gammas.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(torch.all(m.bias == 0) for m in norms)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_receptive_field_matches_gradient_support(n_layers: int) -> None:
    disc = NLayerDiscriminator(in_channels=1, base_channels=4, n_layers=n_layers, norm="none")
    assert disc.receptive_field == {1: 16, 2: 34, 3: 70}[n_layers]
    for p in disc.parameters():  # positive weights: no accidental zero gradients
        p.data.abs_()
    size = 4 * disc.receptive_field // 2 ** n_layers * 2 ** n_layers
    x = torch.randn(1, 1, size, size, requires_grad=True)
    logits = disc(x)
    centre = logits.shape[-1] // 2
    logits[0, 0, centre, centre].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    assert rows.max().item() - rows.min().item() + 1 == disc.receptive_field


def test_too_small_input_raises_naming_n_layers() -> None:
    disc = NLayerDiscriminator(in_channels=3, n_layers=3)
    assert disc.min_input_size == 24
    with pytest.raises(ValueError, match="n_layers=3"):
        disc(torch.randn(1, 3, 16, 16))
    disc(torch.randn(1, 3, 24, 24))


def test_invalid_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="norm='layer'"):
        NLayerDiscriminator(in_channels=3, norm="layer")
    with pytest.raises(ValueError, match="n_layers=0"):
        NLayerDiscriminator(in_channels=3, n_layers=0)


REAL, FAKE = [2.0, 0.5, -1.0], [-2.0, 0.3]


def test_discriminator_losses_match_hand_values() -> None:
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    hinge = 0.5 * ((0.0 + 0.5 + 2.0) / 3 + (0.0 + 1.3) / 2)
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(hinge)
    vanilla = 0.5 * (
        sum(_softplus(-r) for r in REAL) / 3 + sum(_softplus(f) for f in FAKE) / 2
    )
    assert discriminator_loss(real, fake, "vanilla").item() == pytest.approx(vanilla)


def test_generator_losses_match_hand_values() -> None:
    fake = torch.tensor(FAKE)
    assert generator_loss(fake, "hinge").item() == pytest.approx(0.85)
    non_saturating = sum(-math.log(1 / (1 + math.exp(-f))) for f in FAKE) / 2
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(non_saturating)
    minimax = sum(math.log(1 - 1 / (1 + math.exp(-f))) for f in FAKE) / 2
    assert generator_loss(fake, "vanilla").item() == pytest.approx(minimax)


def test_invalid_kind_lists_valid_values() -> None:
    logits = torch.zeros(2)
    with pytest.raises(ValueError, match="kind='lsgan'.*hinge.*vanilla"):
        discriminator_loss(logits, logits, "lsgan")
    with pytest.raises(ValueError, match="non_saturating"):
        generator_loss(logits, "wgan")
    with pytest.raises(ValueError, match="kind='non_saturating'"):
        discriminator_loss(logits, logits, "non_saturating")


def test_adaptive_weight_matches_gradient_norm_ratio() -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    a, b = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0])
    rec, g = (a * w).sum(), (b * w).sum()
    weight = adaptive_weight(rec, g, w)
    assert weight.item() == pytest.approx(5.0 / (1.0 + 1e-4))
    assert not weight.requires_grad
    (rec + weight * g).backward()  # graphs were retained for the caller
    torch.testing.assert_close(w.grad, a + weight * b)


def test_adaptive_weight_is_clamped() -> None:
    w = nn.Parameter(torch.ones(2))
    rec, g = (torch.tensor([30.0, 40.0]) * w).sum(), (torch.zeros(2) * w).sum()
    assert adaptive_weight(rec, g, w, max_weight=100.0).item() == 100.0
    assert adaptive_weight(rec, g, w).item() == pytest.approx(1e4)  # 50 / 1e-4 = 5e5 → 1e4


def test_adaptive_weight_rejects_unrelated_layer_and_no_grad() -> None:
    w, other = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    rec, g = (w * 2).sum(), (other * 3).sum()
    with pytest.raises(ValueError, match="last_layer"):
        adaptive_weight(rec, g, w)
    with torch.no_grad(), pytest.raises(ValueError, match="no_grad"):
        adaptive_weight((w * 2).sum(), (w * 3).sum(), w)


def test_disc_factor_switches_on_at_disc_start() -> None:
    assert disc_factor(0, disc_start=100) == 0.0
    assert disc_factor(99, disc_start=100, factor=0.5) == 0.0
    assert disc_factor(100, disc_start=100, factor=0.5) == 0.5
    assert disc_factor(5000, disc_start=100) == 1.0
