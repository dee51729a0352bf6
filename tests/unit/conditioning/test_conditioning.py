"""Embedders and the Conditioner: shapes, nulls, classifier-free-guidance dropout."""

import math

import pytest
import torch

from ldmlab.backbones.unet import UNet
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.concat_embedder import ConcatEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.conditioning.text_encoder import TextEmbedder


def dropped_rows(emb: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """Bool (B,): rows of ``emb`` exactly equal to the null embedding."""
    return (emb == null).flatten(1).all(dim=1)


# --- embedders ---------------------------------------------------------------------------


def test_class_embedder_shapes_and_null_row() -> None:
    labels = torch.tensor([0, 3, 9])
    cross = ClassEmbedder(10, 8)
    assert cross(labels).shape == (3, 1, 8)
    torch.testing.assert_close(cross(labels)[:, 0], cross.table.weight[labels])
    torch.testing.assert_close(cross.null(2), cross.table.weight[10].expand(2, 1, 8))
    vector = ClassEmbedder(10, 8, output_type="vector")
    assert vector(labels).shape == (3, 8)
    assert vector.null(4).shape == (4, 8)


@pytest.mark.parametrize("labels", [torch.tensor([0, 10]), torch.tensor([-1, 2])])
def test_class_embedder_rejects_out_of_range_labels(labels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="class_label.*data.num_classes"):
        ClassEmbedder(10, 8)(labels)


def test_class_embedder_rejects_float_labels_and_concat_output() -> None:
    with pytest.raises(ValueError, match="integer tensor"):
        ClassEmbedder(10, 8)(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="output_type"):
        ClassEmbedder(10, 8, output_type="concat")


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_uncond_is_validated(p: float) -> None:
    with pytest.raises(ValueError, match=r"conditioner\.p_uncond"):
        ClassEmbedder(10, 8, p_uncond=p)


@pytest.mark.parametrize("source_size", [28, 4])
def test_concat_embedder_resizes_to_latent_size(source_size: int) -> None:
    embedder = ConcatEmbedder(in_channels=1, out_channels=3, size=8)
    out = embedder(torch.randn(2, 1, source_size, source_size))
    assert out.shape == (2, 3, 8, 8)


def test_concat_embedder_null_is_a_learned_vector_broadcast_over_space() -> None:
    embedder = ConcatEmbedder(in_channels=1, out_channels=3, size=8)
    with torch.no_grad():
        embedder.null_embedding.copy_(torch.tensor([1.0, -2.0, 3.0]))
    null = embedder.null(2)
    assert null.shape == (2, 3, 8, 8)
    torch.testing.assert_close(null[:, :, 5, 2], torch.tensor([[1.0, -2.0, 3.0]] * 2))
    assert torch.all(null == null[:, :, :1, :1])


def test_concat_embedder_of_a_constant_image_is_constant_inside() -> None:
    embedder = ConcatEmbedder(in_channels=2, out_channels=3, size=8)
    out = embedder(torch.ones(1, 2, 28, 28))
    inner = out[:, :, 1:-1, 1:-1]
    expected = embedder.proj.weight.sum(dim=(1, 2, 3)) + embedder.proj.bias
    torch.testing.assert_close(inner, expected[None, :, None, None].expand_as(inner))


def test_concat_embedder_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match="in_channels=1"):
        ConcatEmbedder(in_channels=1, out_channels=3, size=8)(torch.randn(2, 3, 8, 8))


# --- classifier-free-guidance dropout ----------------------------------------------------


def dropout_fraction(p: float, n: int, training: bool) -> float:
    embedder = ClassEmbedder(10, 8, output_type="vector", p_uncond=p)
    conditioner = Conditioner([embedder]).train(training)
    with torch.no_grad():
        emb = conditioner({"label": torch.randint(0, 10, (n,))})["vector"]
    return dropped_rows(emb, embedder.null(1)).float().mean().item()


def test_dropout_rate_matches_p_uncond_statistically() -> None:
    n, p = 20_000, 0.1
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(dropout_fraction(p, n, training=True) - p) < 5 * sigma


@pytest.mark.parametrize(
    ("p", "training", "expected"), [(0.0, True, 0.0), (1.0, True, 1.0), (1.0, False, 0.0)]
)
def test_dropout_edge_cases_and_eval_mode(p: float, training: bool, expected: float) -> None:
    assert dropout_fraction(p, 2_000, training) == expected


def test_dropped_samples_equal_the_null_and_kept_samples_are_untouched() -> None:
    embedder = ClassEmbedder(10, 8, p_uncond=0.5)
    conditioner = Conditioner({"class": embedder}).train()
    labels = torch.randint(0, 10, (400,))
    emb = conditioner({"label": labels})["crossattn"]
    dropped = dropped_rows(emb, embedder.null(1))
    assert 0 < dropped.sum() < 400
    torch.testing.assert_close(emb[dropped], embedder.null(int(dropped.sum())), rtol=0, atol=0)
    torch.testing.assert_close(emb[~dropped], embedder(labels)[~dropped], rtol=0, atol=0)


def test_dropout_is_independent_per_embedder() -> None:
    first = ClassEmbedder(10, 4, output_type="vector", p_uncond=0.5)
    second = ClassEmbedder(10, 4, output_type="vector", p_uncond=0.5)
    conditioner = Conditioner([first, second]).train()
    n = 8_000
    with torch.no_grad():
        vector = conditioner({"label": torch.randint(0, 10, (n,))})["vector"]
    a, b = dropped_rows(vector[:, :4], first.null(1)), dropped_rows(vector[:, 4:], second.null(1))
    both = (a & b).float().mean().item()
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)


def test_text_dropout_replaces_embedding_and_mask() -> None:
    text = TextEmbedder(embed_dim=16, depth=1, heads=2, max_length=12, p_uncond=1.0)
    out = Conditioner([text]).train()({"caption": ["a bag", "an ankle boot"]})
    torch.testing.assert_close(out["crossattn"], text.null(2), rtol=0, atol=0)
    assert out["crossattn_mask"].all()


def test_learned_null_receives_gradient() -> None:
    embedder = ClassEmbedder(10, 8, p_uncond=1.0)
    Conditioner([embedder]).train()({"label": torch.tensor([1, 2])})["crossattn"].sum().backward()
    assert embedder.table.weight.grad[10].abs().sum() > 0
    assert embedder.table.weight.grad[:10].abs().sum() == 0


def test_every_parameter_is_in_the_training_graph_even_at_p_zero() -> None:
    """DDP without find_unused_parameters needs the nulls in the graph at every step."""
    conditioner = full_conditioner().train()
    out = conditioner(full_batch())
    sum(v.float().sum() for v in out.values()).backward()
    for name, p in conditioner.named_parameters():
        assert p.grad is not None, name


# --- merging, unconditional, compatibility -----------------------------------------------


def full_conditioner() -> Conditioner:
    return Conditioner(
        {
            "class": ClassEmbedder(10, 16),
            "text": TextEmbedder(embed_dim=16, depth=1, heads=2, max_length=10),
            "class_vector": ClassEmbedder(10, 6, output_type="vector"),
            "lowres": ConcatEmbedder(in_channels=1, out_channels=2, size=8),
            "disabled": None,
        }
    ).eval()


def full_batch() -> dict:
    return {
        "label": torch.tensor([1, 7]),
        "caption": ["a coat", "a photo of a sandal"],
        "lowres": torch.randn(2, 1, 28, 28),
    }


def test_outputs_are_merged_by_type() -> None:
    conditioner = full_conditioner()
    assert list(conditioner.embedders) == ["class", "text", "class_vector", "lowres"]
    assert (conditioner.context_dim, conditioner.vector_dim) == (16, 6)
    assert conditioner.concat_channels == 2
    batch = full_batch()
    out = conditioner(batch)
    assert out["crossattn"].shape == (2, 1 + 10, 16)
    torch.testing.assert_close(
        out["crossattn"][:, :1], conditioner.embedders["class"](batch["label"])
    )
    text_emb, text_mask = conditioner.embedders["text"].encode(batch["caption"])
    torch.testing.assert_close(out["crossattn"][:, 1:], text_emb)
    assert out["crossattn_mask"][:, 0].all()
    assert torch.equal(out["crossattn_mask"][:, 1:], text_mask)
    assert out["vector"].shape == (2, 6)
    assert out["concat"].shape == (2, 2, 8, 8)


def test_unconditional_has_forward_shapes_and_null_values() -> None:
    conditioner = full_conditioner()
    cond, uncond = conditioner(full_batch()), conditioner.unconditional(full_batch())
    assert {k: v.shape for k, v in uncond.items()} == {k: v.shape for k, v in cond.items()}
    torch.testing.assert_close(uncond["vector"], conditioner.embedders["class_vector"].null(2))
    torch.testing.assert_close(uncond["concat"], conditioner.embedders["lowres"].null(2))
    assert uncond["crossattn_mask"].all()


def test_empty_conditioner_is_unconditional() -> None:
    conditioner = Conditioner([])
    assert conditioner({"image": torch.zeros(2)}) == {}
    assert (conditioner.context_dim, conditioner.vector_dim, conditioner.concat_channels) == (
        None,
        None,
        0,
    )


def test_conditioner_output_drives_a_compatible_unet() -> None:
    conditioner = full_conditioner()
    unet = UNet(3, 3, 16, [1, 2], 1, [2], 2, context_dim=16, vector_dim=6, concat_channels=2)
    conditioner.check_compatible(unet)
    out = unet(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), conditioner(full_batch()))
    assert out.shape == (2, 3, 8, 8)


def test_check_compatible_names_every_mismatched_key() -> None:
    unet = UNet(3, 3, 16, [1, 2], 1, [2], 2, context_dim=32)
    with pytest.raises(ValueError, match="backbone.context_dim=32.*backbone.vector_dim.*concat_channels"):
        full_conditioner().check_compatible(unet)


def test_bad_conditioner_inputs_are_rejected() -> None:
    with pytest.raises(KeyError, match="reads batch\\['caption'\\]"):
        full_conditioner().train()({"label": torch.tensor([1])})
    with pytest.raises(TypeError, match="conditioner.embedders.0"):
        Conditioner([torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="share one embedding dim"):
        Conditioner([ClassEmbedder(10, 8), ClassEmbedder(10, 16)])
    with pytest.raises(ValueError, match="entries"):
        full_conditioner()({**full_batch(), "caption": ["only one"]})


def test_eval_mode_uses_the_null_for_absent_inputs() -> None:
    conditioner = full_conditioner()
    out = conditioner({"label": torch.tensor([3, 4])})
    null = conditioner.unconditional(full_batch())
    text_width = conditioner.embedders["text"].null(1).shape[1]
    assert torch.equal(out["crossattn"][:, 1:], null["crossattn"][:2, 1:1 + text_width])
    assert not torch.equal(out["crossattn"][:, :1], null["crossattn"][:2, :1])
    only_nulls = conditioner({}, batch_size=3)
    assert only_nulls["concat"].shape[0] == 3


def test_conditioner_p_uncond_sets_every_embedder() -> None:
    embedders = {"a": ClassEmbedder(10, 8, p_uncond=0.0), "b": ClassEmbedder(10, 8)}
    conditioner = Conditioner(embedders, p_uncond=0.3)
    assert all(e.p_uncond == 0.3 for e in conditioner.embedders.values())
    with pytest.raises(ValueError, match="conditioner.p_uncond"):
        Conditioner({"a": ClassEmbedder(10, 8)}, p_uncond=1.5)
