"""Stage-1 GAN controls: LeCam regularisation, the generator's ramp, the fixed (non-adaptive)
weight."""

import pytest
import torch
import torch.nn.functional as F

from ldmlab.autoencoder.adversarial import discriminator_loss, generator_loss, generator_ramp
from ldmlab.autoencoder.discriminator import NLayerDiscriminator
from ldmlab.autoencoder.lecam import LeCam
from ldmlab.autoencoder.loss import AutoencoderLoss
from ldmlab.autoencoder.regularizers.base import RegularizerOutput
from ldmlab.utils.errors import ConfigError


def test_lecam_closed_form_and_moving_averages() -> None:
    lecam = LeCam(decay=0.9)
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 3.0])
    reg = lecam(real, fake)
    ema_real, ema_fake = 0.1 * 1.0, 0.1 * 1.0  # lerp from 0 towards the means (1.0, 1.0)
    assert lecam.ema_real.item() == pytest.approx(ema_real)
    assert lecam.ema_fake.item() == pytest.approx(ema_fake)
    expected = (F.relu(real - ema_fake).pow(2).mean() + F.relu(ema_real - fake).pow(2).mean()).item()
    assert reg.item() == pytest.approx(expected)
    lecam(real, fake)
    assert lecam.ema_real.item() == pytest.approx(0.9 * ema_real + 0.1 * 1.0)
    assert set(lecam.state_dict()) == {"ema_real", "ema_fake"}  # checkpointed


@pytest.mark.parametrize(("step", "expected"), [(9, 0.0), (10, 0.25), (11, 0.5), (13, 1.0), (50, 1.0)])
def test_generator_ramp(step: int, expected: float) -> None:
    assert generator_ramp(step, disc_start=10, ramp_steps=4) == expected
    assert generator_ramp(step, disc_start=10, ramp_steps=0) == (0.0 if step < 10 else 1.0)


def _loss(**kwargs) -> AutoencoderLoss:
    torch.manual_seed(0)
    disc = NLayerDiscriminator(in_channels=1, base_channels=8, n_layers=1, norm="none")
    return AutoencoderLoss(disc, None, perceptual_weight=0.0, disc_start=5, **kwargs)


def _batch():
    torch.manual_seed(1)
    last = torch.randn(4, 4, requires_grad=True)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    x_rec = torch.tanh(torch.randn(2, 1, 8, 8) + last.sum() * 0.01)
    return x, x_rec, RegularizerOutput(torch.zeros(()), {}), last


def test_fixed_weight_and_ramp_enter_the_generator_loss() -> None:
    x, x_rec, reg, last = _batch()
    loss = _loss(adaptive=False, disc_weight=0.1, gen_ramp_steps=4)
    total, log = loss.generator_step(x, x_rec, reg, step=6, last_layer=last)  # ramp (6-5+1)/4 = 0.5
    nll, _ = loss.nll(x, x_rec)
    g = generator_loss(loss.discriminator(x_rec), "hinge")
    assert log["adaptive_weight"].item() == 1.0
    assert total.item() == pytest.approx((nll + 0.1 * 0.5 * g).item(), rel=1e-6)


def test_discriminator_loss_adds_lecam() -> None:
    x, x_rec, _, _ = _batch()
    loss = _loss(lecam_weight=0.5, lecam_decay=0.0)  # decay 0: the averages are this batch's means
    d_loss, log = loss.discriminator_step(x, x_rec, step=5)
    real, fake = loss.discriminator(x), loss.discriminator(x_rec)
    reg = F.relu(real - fake.mean()).pow(2).mean() + F.relu(real.mean() - fake).pow(2).mean()
    expected = discriminator_loss(real, fake, "hinge") + 0.5 * reg
    assert d_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["lecam"].item() == pytest.approx(reg.item(), rel=1e-5)


@pytest.mark.parametrize(("key", "value"), [("lecam_weight", -1.0), ("lecam_decay", 1.0),
                                            ("gen_ramp_steps", -3)])
def test_bad_settings_name_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"loss.{key}"):
        _loss(**{key: value})
