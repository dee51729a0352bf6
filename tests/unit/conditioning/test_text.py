"""Byte tokenizer, text encoder (τθ) and Fashion-MNIST captions."""

import random

import pytest
import torch

from ldmlab.conditioning.text_encoder import TextEmbedder
from ldmlab.conditioning.tokenizer import BOS_ID, EOS_ID, PAD_ID, ByteTokenizer
from ldmlab.data.captions import CAPTION_TEMPLATES, FASHION_MNIST_CLASSES, caption_for

# --- tokenizer ---------------------------------------------------------------------------


def test_tokenizer_round_trip_including_unicode() -> None:
    texts = ["a photo of a bag", "", "Ünïcode ✓ 靴"]
    tokenizer = ByteTokenizer(max_length=32)
    ids, _ = tokenizer(texts)
    assert tokenizer.decode(ids) == texts


def test_tokenizer_layout_padding_and_mask() -> None:
    ids, mask = ByteTokenizer(max_length=8)(["ab", "abcd"])
    a, b = ord("a") + 3, ord("b") + 3
    assert ids[0].tolist() == [BOS_ID, a, b, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]
    assert mask.tolist()[0] == [True] * 4 + [False] * 4
    assert mask[1].sum() == 6
    assert ids.dtype == torch.long and mask.dtype == torch.bool


def test_tokenizer_truncates_before_eos_at_a_character_boundary() -> None:
    tokenizer = ByteTokenizer(max_length=6)
    ids, mask = tokenizer(["abcdefgh", "aé€"])  # é is 2 bytes, € is 3
    assert ids[0, -1] == EOS_ID and mask[0].all()
    assert tokenizer.decode(ids) == ["abcd", "aé"]


def test_tokenizer_rejects_a_bare_string_and_tiny_max_length() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        ByteTokenizer()("a bag")
    with pytest.raises(ValueError, match="max_length"):
        ByteTokenizer(max_length=1)


# --- text encoder ------------------------------------------------------------------------


def tiny_text_embedder() -> TextEmbedder:
    return TextEmbedder(embed_dim=16, depth=2, heads=2, max_length=24).eval()


def test_text_embedder_shapes_and_mask() -> None:
    embedder = tiny_text_embedder()
    emb, mask = embedder.encode(["a coat", "a photo of a sneaker"])
    assert emb.shape == (2, 24, 16)
    assert mask.sum(dim=1).tolist() == [len("a coat") + 2, len("a photo of a sneaker") + 2]
    assert embedder.null(3).shape == (3, 24, 16) and embedder.null_mask(3).all()


def test_text_embedder_output_depends_on_the_text() -> None:
    embedder = tiny_text_embedder()
    emb = embedder(["a photo of a bag", "a photo of a dress"])
    assert not torch.allclose(emb[0], emb[1])


def test_text_embedder_is_batch_consistent() -> None:
    embedder = tiny_text_embedder()
    texts = ["a bag", "a long caption of an ankle boot", "shirt"]
    batched = embedder(texts)
    for row, text in enumerate(texts):
        torch.testing.assert_close(embedder([text])[0], batched[row], atol=1e-5, rtol=1e-5)


def test_text_embedder_gradients_reach_every_parameter_but_the_null() -> None:
    embedder = tiny_text_embedder().train()
    embedder(["a sandal", "a trouser"]).square().sum().backward()
    for name, p in embedder.named_parameters():
        if name != "null_embedding":
            assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- captions ----------------------------------------------------------------------------


def test_fashion_mnist_class_names() -> None:
    assert FASHION_MNIST_CLASSES == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )


def test_captions_contain_the_class_name_and_cover_the_templates() -> None:
    rng = random.Random(0)
    seen_templates = set()
    for _ in range(300):
        label = rng.randrange(10)
        caption = caption_for(label, rng)
        name = FASHION_MNIST_CLASSES[label].lower()
        assert name in caption
        seen_templates.add(caption.replace(name, "{name}"))
    assert len(CAPTION_TEMPLATES) >= 8
    assert len({t.replace("an {name}", "a {name}") for t in seen_templates}) >= 8


def test_captions_are_reproducible_and_use_the_right_article() -> None:
    assert caption_for(9, random.Random(5)) == caption_for(9, random.Random(5))
    captions = {caption_for(9, random.Random(seed)) for seed in range(50)}
    assert not any("a ankle" in caption for caption in captions)
    assert any("an ankle boot" in caption for caption in captions)
    assert "zebra" in caption_for(0, random.Random(1), class_names=["Zebra"])


def test_caption_label_out_of_range() -> None:
    with pytest.raises(ValueError, match="class_label 10"):
        caption_for(10, random.Random(0))
