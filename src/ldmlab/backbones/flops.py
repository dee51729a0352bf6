"""FLOPs of one denoiser forward per image, counted by ``torch.utils.flop_counter`` on the meta device.

Convention: FLOPs = 2 × multiply-adds (a Linear from n to m features costs 2·n·m per token; papers
that quote "Gflops" as multiply-adds, like DiT's 118.6 for DiT-XL/2 at 256², give half this).
Counted are the ops torch's ``FlopCounterMode`` knows: matmuls, convolutions and attention;
elementwise ops (norms, activations, the bias of a conv) count 0.

The count runs on meta tensors: the net's parameters and buffers are swapped for meta
stand-ins (``torch.func.functional_call``), so no weight is allocated or read and a 675M-parameter
DiT-XL/2 counts in well under a second; a net built under ``torch.device("meta")`` counts as is.
Meta also decomposes ``scaled_dot_product_attention`` into counted matmuls, where a real CPU
forward runs a fused kernel the counter skips.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from ldmlab.backbones.base import Denoiser

META = torch.device("meta")


def forward_flops_per_image(
    net: Denoiser, latent_size: int, context_length: int = 1, with_mask: bool = False,
    training: bool = False,
) -> int:
    """FLOPs of ``net``'s forward for one image: x (1, in_channels, latent_size, latent_size),
    t (1,), and the cond entries the net was built for: crossattn (1, context_length,
    context_dim) [+ crossattn_mask (1, context_length) where ``with_mask``], vector (1, vector_dim),
    concat (1, concat_channels, latent_size, latent_size). ``training``: the path a training
    forward takes (grad enabled; a one-token cross-attention then computes q and k, which
    inference skips), else the inference path."""
    state = {name: torch.empty_like(t, device=META) for name, t in (*net.named_parameters(),
                                                                    *net.named_buffers())}
    dtype = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
    x, t, cond = example_inputs(net, latent_size, context_length, with_mask, dtype)
    counter = FlopCounterMode(display=False)
    with counter, torch.set_grad_enabled(training):  # eager, also where the net was compiled in place
        functional_call(_Eager(net), {f"net.{k}": v for k, v in state.items()}, (x, t, cond))
    return counter.get_total_flops()


def train_flops_per_image(forward_flops: int) -> int:
    """Training FLOPs per image ≈ 3 × forward: the backward costs about twice the forward (one
    matmul for the input gradient, one for the weight gradient, per forward matmul)."""
    return 3 * forward_flops


def example_inputs(
    net: Denoiser, latent_size: int, context_length: int, with_mask: bool, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Meta (x, t, cond) for one image, as ``forward_flops_per_image`` describes."""
    side = (latent_size, latent_size)
    x = torch.empty(1, net.in_channels, *side, device=META, dtype=dtype)
    cond = {}
    if net.context_dim:
        cond["crossattn"] = torch.empty(1, context_length, net.context_dim, device=META, dtype=dtype)
        if with_mask:
            cond["crossattn_mask"] = torch.ones(1, context_length, device=META, dtype=torch.bool)
    if net.vector_dim:
        cond["vector"] = torch.empty(1, net.vector_dim, device=META, dtype=dtype)
    if net.concat_channels:
        cond["concat"] = torch.empty(1, net.concat_channels, *side, device=META, dtype=dtype)
    return x, torch.zeros(1, device=META, dtype=torch.long), cond


class _Eager(nn.Module):
    """Calls ``net.forward`` itself, bypassing a ``net.compile()``d call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args):
        return self.net.forward(*args)
