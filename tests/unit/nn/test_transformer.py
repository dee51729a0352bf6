"""Cross-attention, transformer block and SpatialTransformer."""

import math

import pytest
import torch

from ldmlab.nn.transformer import BasicTransformerBlock, CrossAttention, SpatialTransformer


def perturb_(module: torch.nn.Module) -> None:
    """Give zero-initialised parameters random values so gradients and outputs flow."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0, 0.1)


def test_cross_attention_shapes_and_context_dependence() -> None:
    attn = CrossAttention(query_dim=16, context_dim=12, heads=2, dim_head=8)
    x, context = torch.randn(3, 20, 16), torch.randn(3, 5, 12)
    out = attn(x, context)
    assert out.shape == (3, 20, 16)
    assert not torch.allclose(out, attn(x, context + torch.randn_like(context)))


def test_single_head_self_attention_matches_closed_form() -> None:
    attn = CrossAttention(query_dim=6, heads=1, dim_head=4)
    x = torch.randn(2, 7, 6)
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), dim=-1)
    expected = attn.to_out(weights @ v)
    torch.testing.assert_close(attn(x), expected)


def test_masked_context_positions_have_no_influence() -> None:
    attn = CrossAttention(query_dim=16, context_dim=12, heads=4, dim_head=4)
    x, context = torch.randn(2, 9, 16), torch.randn(2, 6, 12)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 4 + [False] * 2])
    out = attn(x, context, mask)
    changed = context.clone()
    changed[:, 4:] = 100 * torch.randn(2, 2, 12)
    torch.testing.assert_close(attn(x, changed, mask), out)
    # Masking the tail equals attending to the truncated context.
    torch.testing.assert_close(attn(x, context[:, :4]), out)


def test_cross_attention_rejects_wrong_context_usage() -> None:
    with pytest.raises(ValueError, match="pass context"):
        CrossAttention(8, context_dim=4, heads=2, dim_head=4)(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="without context_dim"):
        CrossAttention(8, heads=2, dim_head=4)(torch.randn(1, 3, 8), torch.randn(1, 2, 8))


def test_block_without_context_dim_has_no_cross_attention() -> None:
    block = BasicTransformerBlock(16, heads=2, dim_head=8)
    assert block.cross_attn is None
    assert block(torch.randn(2, 5, 16)).shape == (2, 5, 16)
    with pytest.raises(ValueError, match="no cross-attention"):
        block(torch.randn(2, 5, 16), torch.randn(2, 3, 16))


def test_block_self_attention_key_mask_hides_padding() -> None:
    block = BasicTransformerBlock(16, heads=2, dim_head=8)
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[True, True, True, False, False, False]])
    changed = x.clone()
    changed[:, 3:] = torch.randn(1, 3, 16)
    torch.testing.assert_close(block(changed, x_mask=mask)[:, :3], block(x, x_mask=mask)[:, :3])


def test_spatial_transformer_is_identity_at_init() -> None:
    st = SpatialTransformer(channels=16, heads=2, dim_head=8, depth=2, context_dim=10)
    x = torch.randn(2, 16, 4, 5)
    torch.testing.assert_close(st(x, torch.randn(2, 3, 10)), x)


def test_spatial_transformer_uses_context_and_mask_after_training_starts() -> None:
    st = SpatialTransformer(channels=16, heads=2, dim_head=8, context_dim=10)
    perturb_(st)
    x, context = torch.randn(2, 16, 4, 4), torch.randn(2, 3, 10)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = st(x, context, mask)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)
    changed = context.clone()
    changed[1, 1:] = torch.randn(2, 10)
    changed[0, 2] = torch.randn(10)
    torch.testing.assert_close(st(x, changed, mask), out)
    assert not torch.allclose(st(x, torch.randn_like(context), mask), out)


def test_spatial_transformer_gradients_reach_every_parameter() -> None:
    st = SpatialTransformer(channels=16, heads=2, dim_head=8, context_dim=10)
    perturb_(st)
    st(torch.randn(2, 16, 4, 4), torch.randn(2, 3, 10)).square().sum().backward()
    for name, p in st.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
