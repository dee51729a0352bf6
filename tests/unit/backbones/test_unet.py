"""Timestep embeddings and the conditional UNet."""

import math

import pytest
import torch

from ldmlab.backbones.unet import UNet
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.nn.attention import SelfAttention2d
from ldmlab.nn.embeddings import TimestepEmbedder, timestep_embedding
from ldmlab.nn.transformer import SpatialTransformer

B, C, H = 2, 3, 8


def tiny_unet(**overrides) -> UNet:
    config = dict(
        in_channels=C,
        out_channels=C,
        model_channels=16,
        channel_mult=[1, 2],
        num_res_blocks=1,
        attention_resolutions=[2],
        num_heads=2,
    )
    return UNet(**{**config, **overrides})


def perturb_(module: torch.nn.Module) -> None:
    """Randomise the zero-initialised parameters (out conv, proj_out, norm biases)."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0, 0.1)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, C, H, H), torch.tensor([3, 700])


FULL_COND = dict(context_dim=12, vector_dim=5, concat_channels=4)


def full_cond() -> dict[str, torch.Tensor]:
    return {
        "crossattn": torch.randn(B, 6, 12),
        "crossattn_mask": torch.tensor([[True] * 6, [True] * 3 + [False] * 3]),
        "vector": torch.randn(B, 5),
        "concat": torch.randn(B, 4, H, H),
    }


# --- timestep embedding -------------------------------------------------------------------


def test_timestep_embedding_matches_formula() -> None:
    t = torch.tensor([0, 1, 10, 999])
    emb = timestep_embedding(t, 8)
    for row, step in enumerate(t.tolist()):
        freqs = [10000 ** (-i / 4) for i in range(4)]
        expected = [math.cos(step * f) for f in freqs] + [math.sin(step * f) for f in freqs]
        torch.testing.assert_close(emb[row], torch.tensor(expected), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))


def test_timestep_embedding_odd_dim_is_zero_padded_and_float_t_allowed() -> None:
    emb = timestep_embedding(torch.tensor([2.5, 7.0]), 7)
    assert emb.shape == (2, 7)
    assert torch.all(emb[:, -1] == 0)
    torch.testing.assert_close(emb[:, :6], timestep_embedding(torch.tensor([2.5, 7.0]), 6))


def test_timestep_embedder_width_and_bad_shape() -> None:
    assert TimestepEmbedder(16)(torch.tensor([1, 2, 3])).shape == (3, 64)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        timestep_embedding(torch.zeros(2, 1), 8)


# --- UNet structure and shapes ------------------------------------------------------------


def test_attention_kind_follows_context_dim() -> None:
    assert any(isinstance(m, SelfAttention2d) for m in tiny_unet().modules())
    assert not any(isinstance(m, SpatialTransformer) for m in tiny_unet().modules())
    cross = tiny_unet(context_dim=12)
    assert any(isinstance(m, SpatialTransformer) for m in cross.modules())
    assert not any(isinstance(m, SelfAttention2d) for m in cross.modules())


@pytest.mark.parametrize(
    ("config", "keys"),
    [
        ({}, []),
        ({"context_dim": 12}, ["crossattn"]),
        ({"context_dim": 12}, ["crossattn", "crossattn_mask"]),
        ({"vector_dim": 5}, ["vector"]),
        ({"concat_channels": 4}, ["concat"]),
        (FULL_COND, ["crossattn", "crossattn_mask", "vector", "concat"]),
    ],
)
def test_output_shape_for_each_condition_type(config: dict, keys: list[str]) -> None:
    net = tiny_unet(out_channels=5, **config)
    x, t = inputs()
    cond = {k: v for k, v in full_cond().items() if k in keys}
    assert net(x, t, cond).shape == (B, 5, H, H)


def test_output_is_zero_at_init() -> None:
    x, t = inputs()
    out = tiny_unet(**FULL_COND)(x, t, full_cond())
    assert torch.all(out == 0)


def test_gradients_reach_every_parameter() -> None:
    net = tiny_unet(**FULL_COND)
    perturb_(net)
    x, t = inputs()
    net(x, t, full_cond()).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_output_depends_on_t_and_on_each_condition() -> None:
    net = tiny_unet(**FULL_COND)
    perturb_(net)
    x, t = inputs()
    cond = full_cond()
    out = net(x, t, cond)
    assert not torch.allclose(net(x, t + 1, cond), out)
    for key in ("crossattn", "vector", "concat"):
        changed = {**cond, key: cond[key] + torch.randn_like(cond[key])}
        assert not torch.allclose(net(x, t, changed), out), key


def test_masked_context_has_no_influence() -> None:
    net = tiny_unet(context_dim=12)
    perturb_(net)
    x, t = inputs()
    cond = {k: v for k, v in full_cond().items() if k.startswith("crossattn")}
    out = net(x, t, cond)
    changed = cond["crossattn"].clone()
    changed[1, 3:] = torch.randn(3, 12)
    torch.testing.assert_close(net(x, t, {**cond, "crossattn": changed}), out)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"attention_resolutions": [4]}, "backbone.attention_resolutions"),
        ({"num_heads": 3}, "backbone.num_heads"),
        ({"channel_mult": []}, "backbone.channel_mult"),
        ({"num_res_blocks": 0}, "backbone.num_res_blocks"),
        ({"context_dim": 0}, "backbone.context_dim"),
        ({"concat_channels": -1}, "backbone.concat_channels"),
    ],
)
def test_bad_config_names_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        tiny_unet(**overrides)


def _without(key: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in full_cond().items() if k != key}


@pytest.mark.parametrize(
    ("config", "cond", "match"),
    [
        ({}, {"crossattn": torch.randn(B, 6, 12)}, "backbone.context_dim"),
        ({}, {"vector": torch.randn(B, 5)}, "backbone.vector_dim"),
        ({}, {"concat": torch.randn(B, 4, H, H)}, "backbone.concat_channels"),
        ({}, {"label": torch.zeros(B)}, "unknown keys"),
        (
            FULL_COND,
            _without("crossattn_mask") | {"crossattn": torch.randn(B, 6, 7)},
            "context_dim",
        ),
        (FULL_COND, _without("crossattn"), "no 'crossattn'"),
        (FULL_COND, _without("vector"), "backbone.vector_dim"),
        (FULL_COND, _without("concat"), "backbone.concat_channels"),
        (FULL_COND, _without("concat") | {"concat": torch.randn(B, 3, H, H)}, "concat_channels"),
        (FULL_COND, _without("concat") | {"concat": torch.randn(B, 4, 4, 4)}, "concat"),
        (FULL_COND, _without("vector") | {"vector": torch.randn(B, 6)}, "backbone.vector_dim"),
        (
            FULL_COND,
            _without("crossattn_mask") | {"crossattn_mask": torch.zeros(B, 6, dtype=torch.bool)},
            "every position",
        ),
        (FULL_COND, _without("crossattn_mask") | {"crossattn_mask": torch.ones(B, 6)}, "bool"),
    ],
)
def test_bad_cond_is_rejected(config: dict, cond: dict, match: str) -> None:
    x, t = inputs()
    with pytest.raises(ValueError, match=match):
        tiny_unet(**config)(x, t, cond)


def test_bad_x_and_t_are_rejected() -> None:
    net = tiny_unet()
    x, t = inputs()
    with pytest.raises(ValueError, match="backbone.in_channels"):
        net(torch.randn(B, C + 1, H, H), t)
    with pytest.raises(ValueError, match="backbone.channel_mult"):
        net(torch.randn(B, C, 7, 7), t)
    with pytest.raises(ValueError, match=r"t must have shape"):
        net(x, t[:1])


# --- learning ----------------------------------------------------------------------------


def test_tiny_unet_with_class_embedder_overfits_a_handful_of_pairs() -> None:
    """Same x and t for every pair: only the label tells the targets apart, so a >10× loss
    drop (the label-blind optimum is ~3/4 of the initial loss) needs the cross-attn path."""
    conditioner = Conditioner({"label": ClassEmbedder(num_classes=4, embed_dim=16)})
    net = tiny_unet(context_dim=16)
    conditioner.check_compatible(net)
    x, target = torch.randn(1, C, H, H).expand(4, -1, -1, -1), torch.randn(4, C, H, H)
    t, labels = torch.full((4,), 300), torch.arange(4)
    optimizer = torch.optim.Adam([*net.parameters(), *conditioner.parameters()], lr=3e-3)
    losses = []
    for _ in range(60):
        loss = (net(x, t, conditioner({"label": labels})) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
