"""UNet gradient checkpointing: the same outputs and gradients, bit for bit (cross-attention,
a context mask and dropout included), and every ResBlock / attention layer really recomputed."""

from __future__ import annotations

import torch

from ldmlab.backbones.unet import UNet
from ldmlab.nn.attention import SelfAttention2d
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.nn.transformer import SpatialTransformer
from tests.unit.backbones.test_unet import full_cond, inputs, perturb_, tiny_unet

RECOMPUTED = (ResnetBlock, SpatialTransformer, SelfAttention2d)


def twins(**overrides) -> tuple[UNet, UNet]:
    """A UNet without and one with checkpointing, with the same (all non-zero) weights."""
    plain = tiny_unet(**overrides)
    perturb_(plain)
    ckpt = tiny_unet(**overrides, gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    return plain, ckpt


def output_and_grads(net: UNet, x, t, cond) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(1)  # the same dropout draws in both nets
    out = net(x, t, cond)
    out.square().sum().backward()
    return out.detach(), [p.grad for p in net.parameters()]


def test_outputs_and_every_gradient_are_unchanged_with_cross_attention_and_dropout():
    plain, ckpt = twins(context_dim=12, vector_dim=5, concat_channels=4, attention_resolutions=[1, 2],
                        dropout=0.2)
    x, t = inputs()
    cond = full_cond()
    out, grads = output_and_grads(plain.train(), x, t, cond)
    out_ckpt, grads_ckpt = output_and_grads(ckpt.train(), x, t, cond)
    assert torch.equal(out, out_ckpt)
    assert len(grads) == len(grads_ckpt) == len(list(plain.parameters()))
    for a, b in zip(grads, grads_ckpt, strict=True):
        assert a is not None and b is not None and torch.equal(a, b)
    assert any(isinstance(m, SpatialTransformer) for m in ckpt.modules())


def forward_calls(net: UNet, with_grad: bool) -> dict[str, int]:
    """Forward runs of each ResBlock / attention layer in one forward (+ backward) pass."""
    calls: dict[str, int] = {}

    def counted(name: str, forward):
        def run(*args):
            calls[name] += 1
            return forward(*args)
        return run

    for name, module in net.named_modules():
        if isinstance(module, RECOMPUTED):  # forward hooks do not fire in a checkpoint's recompute
            calls[name] = 0
            module.forward = counted(name, module.forward)
    x, t = inputs()
    with torch.set_grad_enabled(with_grad):
        out = net(x, t)
    if with_grad:
        out.sum().backward()
    return calls


def test_each_block_runs_twice_with_checkpointing_and_once_without():
    plain, ckpt = twins(attention_resolutions=[1, 2])  # self-attention at both levels
    once, twice = forward_calls(plain, True), forward_calls(ckpt, True)
    assert once.keys() == twice.keys() and len(once) == 15  # 8 ResBlocks, 7 self-attention layers
    assert any(isinstance(ckpt.get_submodule(n), SelfAttention2d) for n in once)
    assert set(once.values()) == {1} and set(twice.values()) == {2}


def test_no_recomputation_without_grad():
    _, ckpt = twins()
    assert set(forward_calls(ckpt, False).values()) == {1}
