"""Autoguidance (Karras et al. 2024): out = w + s·(c − w), w a weaker model's output under the same
condition; a guide of another latent space, process, parameterisation or conditioning is refused."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from ldmlab.guidance.autoguidance import Autoguidance
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.utils.errors import ConfigError, FieldError
from tests.conftest import compose_config
from tests.unit.guidance.tiny_ldm import LABELS, batch_sizes, draw, latent_shape, tiny_ldm

SCALE = 2.5


@pytest.fixture(scope="module")
def strong():
    return tiny_ldm()


@pytest.fixture(scope="module")
def weak():
    return tiny_ldm(seed=1)


def test_the_model_as_its_own_guide_is_the_unguided_sample_bit_for_bit(strong):
    bound = strong.prepare_guidance(Autoguidance(SCALE, guide=strong))
    assert bound.mixing is not None
    with batch_sizes(strong.ema.shadow["backbone"]) as (sizes,):
        guided = draw(strong, bound)
    assert sizes == [len(LABELS)] * 16  # 8 steps × (the model's pass + the guide's pass), batch B each
    assert torch.equal(guided, draw(strong, None))


def test_a_weaker_guide_gives_w_plus_s_times_c_minus_w(strong, weak):
    guidance = Autoguidance(SCALE, guide=weak)
    bound = strong.prepare_guidance(guidance)
    net, guide = strong.ema.shadow, weak.ema.shadow
    condition, n = {"label": LABELS}, len(LABELS)
    cond = net["conditioner"](condition)
    second = bound.mixing.second_condition(net["conditioner"], condition, n)
    table = guide["conditioner"].embedders.label.table.weight
    assert torch.equal(second["vector"], table[LABELS])  # the guide's own rows for the labels, not its null

    x, t = torch.randn(n, *latent_shape(strong)), torch.full((n,), 700)
    with torch.no_grad():
        c = net["backbone"](x, t, cond)
        w = guide["backbone"](x, t, {"vector": table[LABELS]})
        _, eps = GuidedDenoiser(net["backbone"], strong.parameterization, strong.schedule, cond, second,
                                bound).predict(x, t)
    assert (c - w).abs().max() > 0.1  # the guide differs: a real check
    torch.testing.assert_close(eps, w + SCALE * (c - w), rtol=1e-6, atol=1e-5)

    guided, plain = draw(strong, bound), draw(strong, None)
    assert (guided - plain).abs().max() > 1e-2
    assert torch.equal(draw(strong, strong.prepare_guidance(Autoguidance(1.0, guide=weak))), plain)
    assert strong.prepare_guidance(Autoguidance(1.0, guide=weak)).mixing is None  # s = 1: one pass
    assert guidance.with_scale(4.0).scale == 4.0 and guidance.scale == SCALE
    assert guidance.name == "autoguidance"


MISMATCHES = {
    "schedule": (["diffusion/schedule=linear"], "noise process"),
    "terminal_snr": (["diffusion.schedule.zero_terminal_snr=true"], "noise process"),
    "process": (["diffusion/objective=flow"], "noise process"),
    "latent_shape": (["data.resolution=16"], "latents"),
    "parameterization": (["diffusion/parameterization=v"], "predicts"),
    "classes": (["conditioner.embedders.label.num_classes=5"], "conditioned on"),
}


@pytest.mark.parametrize("mismatch", sorted(MISMATCHES))
def test_a_guide_of_another_setup_is_refused_on_one_line(strong, mismatch):
    overrides, words = MISMATCHES[mismatch]
    guide = tiny_ldm(*overrides, seed=1)
    with pytest.raises(FieldError, match=rf"^guidance\.guide_ckpt: guide\.ckpt .*{words}") as err:
        strong.prepare_guidance(Autoguidance(SCALE, guide_ckpt="guide.ckpt", guide=guide))
    assert "\n" not in str(err.value)


def test_another_first_stage_is_refused(strong):
    guide = tiny_ldm(seed=1)
    guide.first_stage.scale_factor.fill_(1.2)
    with pytest.raises(FieldError, match=r"^guidance\.guide_ckpt: .*scales latents by 1\.2"):
        strong.prepare_guidance(Autoguidance(SCALE, guide=guide))
    guide.first_stage.scale_factor.fill_(1.0)
    guide.first_stage.fingerprint = lambda: "other weights"
    with pytest.raises(FieldError, match=r"^guidance\.guide_ckpt: .*another first stage"):
        strong.prepare_guidance(Autoguidance(SCALE, guide=guide))


def test_the_config_loads_the_guide_and_names_its_key():
    with pytest.raises(FieldError, match=r"^guidance\.guide_ckpt: no guide model"):
        Autoguidance(SCALE)
    cfg = compose_config("sample", ["guidance=autoguidance", "guidance.guide_ckpt=/nowhere/guide.ckpt"])
    assert cfg.guidance.scale == 1.0 and cfg.guidance.guide.guide_ckpt == "/nowhere/guide.ckpt"
    with pytest.raises(Exception, match=r"guidance\.guide_ckpt: /nowhere/guide\.ckpt does not exist") as err:
        instantiate(cfg.guidance)
    assert isinstance(err.value, ConfigError) or isinstance(err.value.__cause__, ConfigError)


def test_a_missing_guide_ckpt_is_refused_rather_than_guiding_with_the_newest_run():
    cfg = compose_config("sample", ["guidance=autoguidance"])
    with pytest.raises(Exception, match=r"guidance\.guide_ckpt: is required: autoguidance needs the weaker "
                                        r"model's checkpoint\. Fix: give the weaker model's") as err:
        instantiate(cfg.guidance)
    assert isinstance(err.value, ConfigError) or isinstance(err.value.__cause__, ConfigError)
