"""U-ViT: tokens for time, vector and context; long skips; masks; checkpointing; config checks."""

from __future__ import annotations

import pytest
import torch

from ldmlab.backbones.uvit import UViT
from ldmlab.utils.errors import FieldError
from tests.unit.backbones.test_dit import redrawn


def tiny_uvit(**overrides) -> UViT:
    config = dict(in_channels=4, out_channels=4, input_size=8, patch_size=2, hidden_size=32, depth=5,
                  num_heads=2)
    return UViT(**{**config, **overrides})


def test_blocks_split_into_in_mid_out_with_one_skip_per_out_block():
    net = tiny_uvit(depth=7)
    assert len(net.in_blocks) == len(net.out_blocks) == 3
    assert all(b.skip_linear is not None for b in net.out_blocks)
    assert all(b.skip_linear is None for b in [*net.in_blocks, net.mid_block])


def test_long_skips_carry_the_shallow_tokens():
    net = redrawn(tiny_uvit())
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    out = net(x, t)
    with torch.no_grad():  # cut the skip path's shallow half: the output must change
        net.out_blocks[-1].skip_linear.weight[:, 32:] = 0
    assert not torch.allclose(out, net(x, t))


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_every_condition_is_a_token_and_the_output_keeps_the_shape(patch):
    net = redrawn(tiny_uvit(patch_size=patch, vector_dim=10, context_dim=6, concat_channels=2))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    cond = {"vector": torch.randn(2, 10), "crossattn": torch.randn(2, 3, 6),
            "concat": torch.randn(2, 2, 8, 8)}
    out = net(x, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    for key in ("vector", "crossattn", "concat"):
        changed = {**cond, key: cond[key] + 1}
        assert not torch.allclose(out, net(x, t, changed)), key


def test_masked_context_tokens_are_never_attended_to():
    net = redrawn(tiny_uvit(context_dim=6))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    context, mask = torch.randn(2, 3, 6), torch.tensor([[True, True, False], [True, False, False]])
    out = net(x, t, {"crossattn": context, "crossattn_mask": mask})
    poked = context.clone()
    poked[:, 2] += 10
    torch.testing.assert_close(out, net(x, t, {"crossattn": poked, "crossattn_mask": mask}))


def test_gradient_checkpointing_gives_the_same_gradients():
    plain, ckpt = redrawn(tiny_uvit()), redrawn(tiny_uvit(gradient_checkpointing=True))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    for net in (plain, ckpt):
        net(x, t).square().sum().backward()
    for a, b in zip(plain.parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_an_even_depth_names_the_key():
    with pytest.raises(FieldError, match=r"backbone\.depth: is 6.*Fix: backbone\.depth=7"):
        tiny_uvit(depth=6)
