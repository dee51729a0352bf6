"""ldmlab DiT + class table → diffusers DiTTransformer2DModel: equal outputs (null row included),
detected mismatches, a safetensors round trip, and refusals naming the key."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiTTransformer2DModel

from ldmlab.backbones.dit import DiT
from ldmlab.backbones.uvit import UViT
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.interop.diffusers_folder import diffusers_denoiser
from ldmlab.interop.dit import assert_same_dit_outputs, label_table, to_diffusers_dit
from ldmlab.utils.errors import ConfigError, FieldError

HIDDEN, CLASSES = 32, 5


def randomised(patch_size: int = 2, **change) -> tuple[DiT, ClassEmbedder]:
    """A DiT (8×8 latents) and its class table with every parameter redrawn (adaLN-Zero's zeros too)."""
    torch.manual_seed(patch_size)
    config = {"hidden_size": HIDDEN, "depth": 2, "num_heads": 2, "vector_dim": HIDDEN} | change
    dit = DiT(4, 4, input_size=8, patch_size=patch_size, **config).eval()
    labels = ClassEmbedder(CLASSES, HIDDEN, output_type="vector").eval()
    with torch.no_grad():
        for param in [*dit.parameters(), *labels.parameters()]:
            torch.nn.init.normal_(param, std=0.1)
    return dit, labels


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (4, 4, 8, 8), t with 0 and T − 1, labels with the null index CLASSES."""
    classes = torch.tensor([0, 3, CLASSES, CLASSES - 1])
    return torch.randn(4, 4, 8, 8), torch.tensor([0, 311, 642, 999]), classes


@pytest.mark.parametrize("patch_size", [1, 2, 4])
def test_diffusers_dit_matches(patch_size: int) -> None:
    dit, labels = randomised(patch_size)
    x, t, classes = inputs()
    with torch.no_grad():
        ours = dit(x, t, {"vector": labels.table(classes)})
    assert ours.std() > 0.1  # a non-trivial output, so the comparison can fail
    assert_same_dit_outputs(dit, labels, to_diffusers_dit(dit, labels), x, t, classes, rtol=1e-5)


def test_safetensors_round_trip_keeps_equality(tmp_path) -> None:
    dit, labels = randomised()
    to_diffusers_dit(dit, labels).save_pretrained(tmp_path / "transformer", safe_serialization=True)
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = DiTTransformer2DModel.from_pretrained(tmp_path / "transformer", low_cpu_mem_usage=False,
                                                     local_files_only=True, use_safetensors=True).eval()
    assert_same_dit_outputs(dit, labels, reloaded, *inputs())


def swap_q_k(theirs: DiTTransformer2DModel) -> None:
    attn = theirs.transformer_blocks[1].attn1
    query = attn.to_q.weight.clone()
    attn.to_q.weight.copy_(attn.to_k.weight)
    attn.to_k.weight.copy_(query)


def permute_labels(theirs: DiTTransformer2DModel) -> None:
    for block in theirs.transformer_blocks:  # every block holds the table; the output layer reads block 0's
        table = block.norm1.emb.class_embedder.embedding_table.weight
        table.copy_(table.roll(1, dims=0))


@pytest.mark.parametrize("corrupt", [swap_q_k, permute_labels], ids=["q<->k", "label rows"])
def test_wrong_mapping_is_detected(corrupt) -> None:
    dit, labels = randomised()
    theirs = to_diffusers_dit(dit, labels)
    with torch.no_grad():
        corrupt(theirs)
    with pytest.raises(RuntimeError, match="differs"):
        assert_same_dit_outputs(dit, labels, theirs, *inputs())


@pytest.mark.parametrize(("change", "key"), [
    ({"context_dim": 16}, "backbone.context_dim"),
    ({"concat_channels": 2}, "backbone.concat_channels"),
    ({"pos_embed": "learned"}, "backbone.pos_embed"),
    ({"mlp_ratio": 2.0}, "backbone.mlp_ratio"),
    ({"vector_dim": 8}, "backbone.vector_dim"),  # the vector goes through a Linear, not a table
])
def test_inexpressible_dit_is_field_error(change: dict, key: str) -> None:
    dit, labels = randomised(**change)
    with pytest.raises(FieldError) as err:
        to_diffusers_dit(dit, labels)
    assert err.value.key == key


def conditioner(*embedders) -> Conditioner:
    return Conditioner({f"e{i}": e for i, e in enumerate(embedders)}).eval()


def test_the_label_table_is_the_one_vector_class_embedder() -> None:
    table = ClassEmbedder(CLASSES, HIDDEN, output_type="vector")
    assert label_table(conditioner(table)) is table
    assert label_table(conditioner(table, ClassEmbedder(CLASSES, HIDDEN, output_type="vector"))) is None
    assert label_table(conditioner(ClassEmbedder(CLASSES, HIDDEN))) is None  # crossattn
    assert label_table(conditioner()) is None


@pytest.mark.parametrize("embedders", [(), ("two tables",)], ids=["unconditional", "two vector tables"])
def test_a_vector_that_is_not_one_class_table_refuses(embedders) -> None:
    dit, labels = randomised() if embedders else randomised(vector_dim=None)
    tables = (labels, ClassEmbedder(CLASSES, HIDDEN, output_type="vector")) if embedders else ()
    with pytest.raises(FieldError) as err:
        diffusers_denoiser(dit, conditioner(*tables), latent_size=8)
    assert err.value.key == "backbone.vector_dim" and "conditioner=class_vector" in err.value.fix


def test_dispatch_by_backbone_and_uvit_refuses() -> None:
    dit, labels = randomised()
    name, theirs = diffusers_denoiser(dit, conditioner(labels), latent_size=8)
    assert name == "transformer" and isinstance(theirs, DiTTransformer2DModel)
    uvit = UViT(4, 4, input_size=8, hidden_size=HIDDEN, depth=3, num_heads=2, vector_dim=HIDDEN)
    with pytest.raises(ConfigError) as err:
        diffusers_denoiser(uvit, conditioner(labels), latent_size=8)
    assert err.value.key == "backbone" and "UViT has no diffusers equivalent" in str(err.value)
    assert err.value.fix == "export a model trained with backbone=dit or backbone=small"
