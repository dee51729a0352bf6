"""Classifier-free guidance and the guided denoiser that batches cond and uncond passes."""

import math

import pytest
import torch
from torch import nn

from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.diffusion.parameterizations.eps import EpsParameterization
from ldmlab.diffusion.parameterizations.v import VParameterization
from ldmlab.diffusion.schedules.linear import LinearSchedule
from ldmlab.guidance.base import GuidanceContext
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.ddim import DDIMSampler

SCHEDULE = LinearSchedule()
NULL_LABEL = 10
CONTEXT = GuidanceContext(None, SCHEDULE, (2, 4, 4), Conditioner({"label": ClassEmbedder(NULL_LABEL, 2)}))
"""A class-conditional model's context: what CFG is prepared against."""


class ToyConditionalNet(nn.Module):
    """A small real network: conv(x) + label embedding + a time term; records batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.embed = nn.Embedding(NULL_LABEL + 1, 2)
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]):
        self.batch_sizes.append(x.shape[0])
        label = self.embed(cond["label"])[:, :, None, None]
        return self.conv(x) + label + 1e-3 * t.float()[:, None, None, None]


def inputs(batch: int = 3):
    x_t = torch.randn(batch, 2, 4, 4)
    t = torch.tensor([10, 500, 900])[:batch]
    cond = {"label": torch.tensor([1, 4, 7])[:batch]}
    uncond = {"label": torch.full((batch,), NULL_LABEL)}
    return x_t, t, cond, uncond


def test_cfg_scales():
    cond, uncond = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.equal(ClassifierFreeGuidance(1.0).combine(cond, uncond), cond)
    assert torch.allclose(ClassifierFreeGuidance(0.0).combine(cond, uncond), uncond, atol=1e-6)
    assert torch.allclose(
        ClassifierFreeGuidance(3.0).combine(cond, uncond), uncond + 3.0 * (cond - uncond)
    )
    assert ClassifierFreeGuidance(3.0).w == 2.0 and ClassifierFreeGuidance(1.0).w == 0.0
    assert not ClassifierFreeGuidance(1.0).needs_unconditional
    assert ClassifierFreeGuidance(0.0).needs_unconditional


def test_cfg_rescale():
    cond, uncond = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    plain = ClassifierFreeGuidance(5.0).combine(cond, uncond)
    assert torch.equal(ClassifierFreeGuidance(5.0, rescale=0.0).combine(cond, uncond), plain)
    full = ClassifierFreeGuidance(5.0, rescale=1.0).combine(cond, uncond)
    dims = (1, 2, 3)
    assert torch.allclose(full.std(dim=dims), cond.std(dim=dims), rtol=1e-5)
    ratio = full / plain  # a per-sample rescale of the guided output
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), rtol=1e-4)
    half = ClassifierFreeGuidance(5.0, rescale=0.5).combine(cond, uncond)
    assert torch.allclose(half, 0.5 * (full + plain), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"scale": math.nan}, "scale"), ({"scale": 2.0, "rescale": 1.5}, "rescale")],
)
def test_cfg_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ClassifierFreeGuidance(**kwargs)


@pytest.mark.parametrize("scale", [0.0, 3.0])
def test_guided_denoiser_makes_one_batched_pass(scale: float):
    x_t, t, cond, uncond = inputs()
    net, param = ToyConditionalNet(), VParameterization()
    guidance = ClassifierFreeGuidance(scale)
    with torch.no_grad():
        x0, eps = GuidedDenoiser(net, param, SCHEDULE, cond, uncond, guidance.prepare(CONTEXT))(x_t, t)
        assert net.batch_sizes == [6]
        c, u = net(x_t, t, cond), net(x_t, t, uncond)
    expected = param.to_x0_eps(u + scale * (c - u), x_t, t, SCHEDULE)
    assert torch.allclose(x0, expected[0], atol=1e-5)
    assert torch.allclose(eps, expected[1], atol=1e-5)


@pytest.mark.parametrize("guidance", [None, ClassifierFreeGuidance(1.0)], ids=["none", "s=1"])
def test_unguided_denoiser_makes_one_conditional_pass(guidance):
    x_t, t, cond, uncond = inputs()
    net, param = ToyConditionalNet(), EpsParameterization()
    bound = guidance.prepare(CONTEXT) if guidance is not None else None
    with torch.no_grad():
        x0, eps = GuidedDenoiser(net, param, SCHEDULE, cond, uncond, bound)(x_t, t)
        assert net.batch_sizes == [3]
        expected = param.to_x0_eps(net(x_t, t, cond), x_t, t, SCHEDULE)
    assert torch.equal(x0, expected[0]) and torch.equal(eps, expected[1])


def test_one_model_call_per_sampler_step():
    _, _, cond, uncond = inputs()
    net = ToyConditionalNet()
    denoise = GuidedDenoiser(
        net, VParameterization(), SCHEDULE, cond, uncond, ClassifierFreeGuidance(4.0).prepare(CONTEXT)
    )
    DDIMSampler(7).sample(denoise, torch.randn(3, 2, 4, 4), SCHEDULE)
    assert net.batch_sizes == [6] * 7


def test_guided_denoiser_bad_conditions():
    _, _, cond, uncond = inputs()
    args = (ToyConditionalNet(), EpsParameterization(), SCHEDULE, cond)
    guidance = ClassifierFreeGuidance(2.0).prepare(CONTEXT)
    with pytest.raises(ValueError, match="uncond is required"):
        GuidedDenoiser(*args, None, guidance)
    with pytest.raises(ValueError, match="keys"):
        GuidedDenoiser(*args, {"text": uncond["label"]}, guidance)
    with pytest.raises(ValueError, match=r"uncond\['label'\]"):
        GuidedDenoiser(*args, {"label": uncond["label"][:1]}, guidance)
