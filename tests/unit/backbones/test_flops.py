"""Denoiser FLOPs per image: closed form, meta count = real count, cheap for huge nets."""

from __future__ import annotations

import time

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ldmlab.backbones.dit import DiT
from ldmlab.backbones.flops import forward_flops_per_image, train_flops_per_image
from ldmlab.backbones.mlp import MLPDenoiser
from tests.unit.backbones.test_unet import FULL_COND, tiny_unet


@pytest.mark.parametrize("vector_dim", [None, 5])
def test_mlp_denoiser_counts_2_flops_per_multiply_add_of_every_linear(vector_dim):
    d, w, layers, out = 3, 8, 2, 4
    net = MLPDenoiser(d, out, model_channels=w, num_layers=layers, vector_dim=vector_dim)
    time_mlp = w * w + w * w  # sinusoid (w) → w → w
    vector = (vector_dim or 0) * w
    block = (w + d) * w + w * 2 * w  # Linear on [h, x_in] + FiLM Linear
    macs = time_mlp + vector + d * w + layers * block + w * out
    assert forward_flops_per_image(net, 1) == 2 * macs
    assert train_flops_per_image(2 * macs) == 6 * macs


def _real_count(net, x, t, cond) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):  # the counted attention path
        net(x, t, cond)
    return counter.get_total_flops()


@pytest.mark.parametrize("with_mask", [False, True])
def test_meta_count_equals_a_real_forward_per_image(with_mask):
    net = tiny_unet(**FULL_COND)
    b, side, length = 2, 8, 6
    cond = {"crossattn": torch.randn(b, length, 12), "vector": torch.randn(b, 5),
            "concat": torch.randn(b, 4, side, side)}
    if with_mask:
        cond["crossattn_mask"] = torch.ones(b, length, dtype=torch.bool)
    real = _real_count(net, torch.randn(b, 3, side, side), torch.tensor([3, 700]), cond)
    counted = forward_flops_per_image(net, side, context_length=length, with_mask=with_mask)
    assert counted * b == real
    assert forward_flops_per_image(net, side) < counted  # 1 context token attends less


def test_training_count_is_a_grad_enabled_forward_where_one_token_attends():
    """With one context token inference skips q and k (softmax over one key is 1); training does not."""
    net = tiny_unet(**FULL_COND)
    b, side = 2, 8
    x, t = torch.randn(b, 3, side, side), torch.tensor([3, 700])
    cond = {"crossattn": torch.randn(b, 1, 12), "vector": torch.randn(b, 5),
            "concat": torch.randn(b, 4, side, side)}
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):  # grad enabled, as in a training step
        net(x, t, cond)
    training = forward_flops_per_image(net, side, training=True)
    assert training * b == counter.get_total_flops()
    assert forward_flops_per_image(net, side) < training


def test_count_leaves_the_weights_alone_and_ignores_an_in_place_compile():
    net = tiny_unet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    eager = forward_flops_per_image(net, 8)
    net.compile()
    assert forward_flops_per_image(net, 8) == eager
    for key, value in net.state_dict().items():
        assert value.device.type == "cpu"
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_a_ldm_sized_unet_counts_on_meta_in_a_second():
    with torch.device("meta"):
        net = tiny_unet(in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4, 4],
                        num_res_blocks=2, attention_resolutions=[4, 2, 1], num_heads=8)
    started = time.perf_counter()
    flops = forward_flops_per_image(net, 32)
    assert time.perf_counter() - started < 5
    # the conv_in alone: 3×3 kernel, 4 → 320 channels at 32×32
    assert flops > 2 * 9 * 4 * 320 * 32 * 32
    assert forward_flops_per_image(net, 16) < flops / 3  # conv cost ∝ pixels: ¼ at half the side


def test_dit_xl2_costs_the_papers_118_6_gmacs_per_256px_image():
    with torch.device("meta"):  # 675M parameters, never allocated
        dit = DiT(4, 8, 32, 2, hidden_size=1152, depth=28, num_heads=16, vector_dim=1152)
    assert forward_flops_per_image(dit, 32) / 2e9 == pytest.approx(118.6, abs=0.05)  # paper: MACs
