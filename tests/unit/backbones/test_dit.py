"""The DiT: the paper's parameter counts, shapes for every patch size, adaLN-Zero identity at init,
cross-attention, gradient checkpointing, bf16 autocast and the config checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldmlab.backbones.dit import DiT, DiTBlock
from ldmlab.nn.patches import sincos_2d, unpatchify
from ldmlab.utils.errors import FieldError

SIZES = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}
PAPER_MILLIONS = {"S": 33.0, "B": 130.5, "L": 458.0, "XL": 675.1}  # DiT paper, Table 1 / 4


def tiny_dit(**overrides) -> DiT:
    config = dict(in_channels=4, out_channels=4, input_size=8, patch_size=2, hidden_size=32, depth=2,
                  num_heads=2)
    return DiT(**{**config, **overrides})


def redrawn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter redrawn (the zero-initialised ones too), so outputs depend on all of them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return net


def paper_count(dit: DiT) -> int:
    """DiT's own count: the network, the 1001-row label table and the (frozen) position table."""
    return sum(p.numel() for p in dit.parameters()) + 1001 * dit.hidden_size + dit.pos_embed.numel()


def test_xl2_has_the_papers_675_129_632_parameters():
    with torch.device("meta"):
        dit = DiT(4, 8, 32, 2, *SIZES["XL"], vector_dim=1152)  # 8 outputs: the paper learns Σ
    assert paper_count(dit) == 675_129_632


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("patch", [2, 4, 8])
def test_every_paper_preset_has_the_papers_parameter_count(size, patch):
    hidden, depth, heads = SIZES[size]
    with torch.device("meta"):
        dit = DiT(4, 8, 32, patch, hidden, depth, heads, vector_dim=hidden)
    # the paper quotes one figure per size (its /2 model's); /4 and /8 differ in the patch layers
    tolerance = 2e-3 if patch == 2 else 6e-3
    assert paper_count(dit) / 1e6 == pytest.approx(PAPER_MILLIONS[size], rel=tolerance)


@pytest.mark.parametrize("patch", [1, 2, 4, 8])
def test_output_has_the_input_shape_for_every_patch_size(patch):
    dit = redrawn(tiny_dit(patch_size=patch))
    x = torch.randn(3, 4, 8, 8)
    out = dit(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert dit.num_tokens == (8 // patch) ** 2


def test_unpatchify_inverts_the_patch_layout():
    x = torch.randn(2, 3, 8, 8)
    p = 4
    tokens = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 4, 5, 1).reshape(2, 4, p * p * 3)
    assert torch.equal(unpatchify(tokens, p, 3, 8, 8), x)


def test_sincos_positions_follow_the_closed_form():
    emb = sincos_2d(8, 3, 5)  # 2 frequencies per axis: ω = 1, 10000^(-1/2)
    row, col = 2, 4
    token = emb[row * 5 + col]
    omega = torch.tensor([1.0, 0.01])
    expected = torch.cat([torch.sin(col * omega), torch.cos(col * omega),
                          torch.sin(row * omega), torch.cos(row * omega)])
    torch.testing.assert_close(token, expected)


def test_adaln_zero_block_is_the_identity_at_init_and_the_net_outputs_zero():
    block = DiTBlock(32, 2, 4.0, context_dim=16)
    x, c = torch.randn(2, 5, 32), torch.randn(2, 32)
    assert torch.equal(block(x, c, torch.randn(2, 3, 16), None), x)
    dit = tiny_dit(vector_dim=32)
    assert torch.equal(dit(torch.randn(2, 4, 8, 8), torch.tensor([3, 7]), {"vector": torch.randn(2, 32)}),
                       torch.zeros(2, 4, 8, 8))


def test_a_trained_block_is_not_the_identity():  # the identity check above can fail
    block = redrawn(DiTBlock(32, 2, 4.0, context_dim=None))
    x = torch.randn(2, 5, 32)
    assert not torch.allclose(block(x, torch.randn(2, 32), None, None), x)


def test_a_hidden_width_vector_is_added_as_is_and_others_are_projected():
    assert isinstance(tiny_dit(vector_dim=32).vector_embed, nn.Identity)
    assert isinstance(tiny_dit(vector_dim=10).vector_embed, nn.Linear)
    assert tiny_dit().vector_embed is None


def test_the_condition_and_timestep_change_the_output():
    dit = redrawn(tiny_dit(vector_dim=32))
    x, t, v = torch.randn(2, 4, 8, 8), torch.tensor([5, 5]), torch.randn(2, 32)
    base = dit(x, t, {"vector": v})
    assert not torch.allclose(base, dit(x, t + 100, {"vector": v}))
    assert not torch.allclose(base, dit(x, t, {"vector": v.flip(0)}))


def test_cross_attention_reads_the_context_and_respects_its_mask():
    dit = redrawn(tiny_dit(context_dim=16))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    context, mask = torch.randn(2, 3, 16), torch.tensor([[True, True, False], [True, False, False]])
    out = dit(x, t, {"crossattn": context, "crossattn_mask": mask})
    masked = context.clone()
    masked[:, 2] += 10  # masked out in both samples
    assert torch.allclose(out, dit(x, t, {"crossattn": masked, "crossattn_mask": mask}), atol=1e-6)
    kept = context.clone()
    kept[:, 0] += 1
    assert not torch.allclose(out, dit(x, t, {"crossattn": kept, "crossattn_mask": mask}))


def test_concat_inputs_join_the_latent_channels():
    dit = redrawn(tiny_dit(concat_channels=3))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    out = dit(x, t, {"concat": torch.randn(2, 3, 8, 8)})
    assert out.shape == x.shape
    assert dit.patch_embed.proj.in_channels == 7


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    plain = redrawn(tiny_dit(context_dim=8))
    ckpt = redrawn(tiny_dit(context_dim=8, gradient_checkpointing=True))
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), torch.randn(2, 2, 8)
    grads = []
    for net in (plain, ckpt):
        net(x, t, {"crossattn": ctx}).square().sum().backward()
        grads.append([p.grad for p in net.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_bf16_autocast_keeps_the_modulation_in_float32():
    dit = redrawn(tiny_dit(vector_dim=32))
    x, t, v = torch.randn(2, 4, 8, 8), torch.tensor([1, 900]), torch.randn(2, 32)
    seen = {}
    dit.blocks[0].modulation.register_forward_hook(lambda m, i, o: seen.update(mod=o.dtype))
    dit.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.update(qkv=o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = dit(x, t, {"vector": v})
    assert seen == {"mod": torch.float32, "qkv": torch.bfloat16}
    assert low.dtype == torch.float32
    full = dit(x, t, {"vector": v})
    assert (low - full).abs().max() < 0.05 * full.abs().max()


def test_learned_positions_are_trained_parameters():
    dit = tiny_dit(pos_embed="learned")
    assert isinstance(dit.pos_embed, nn.Parameter) and dit.pos_embed.shape == (1, 16, 32)
    assert "pos_embed" not in tiny_dit().state_dict()  # the fixed table is rebuilt, not stored


@pytest.mark.parametrize(("overrides", "key"), [
    ({"patch_size": 3}, "backbone.patch_size"),
    ({"num_heads": 5}, "backbone.num_heads"),
    ({"hidden_size": 30, "num_heads": 3}, "backbone.hidden_size"),
    ({"pos_embed": "rope"}, "backbone.pos_embed"),
    ({"depth": 0}, "backbone.depth"),
])
def test_bad_sizes_name_their_key(overrides, key):
    with pytest.raises(FieldError, match=key.replace(".", r"\.")):
        tiny_dit(**overrides)


def test_a_latent_of_another_size_names_input_size():
    with pytest.raises(FieldError, match=r"backbone\.input_size=16"):
        tiny_dit()(torch.randn(1, 4, 16, 16), torch.tensor([1]))


def test_dit_compiles_as_one_graph_with_masked_cross_attention():  # module.compile: no graph breaks
    dit = redrawn(tiny_dit(vector_dim=32, context_dim=8))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([1, 500])
    cond = {"vector": torch.randn(2, 32), "crossattn": torch.randn(2, 3, 8),
            "crossattn_mask": torch.tensor([[True, True, False], [True, False, False]])}
    compiled = torch.compile(dit, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, t, cond), dit(x, t, cond), rtol=0, atol=0)
