"""ldmlab ``DiT`` (+ its class table) ↔ diffusers ``DiTTransformer2DModel``, every weight copied.

diffusers keeps the timestep MLP and the label table inside every block's ``AdaLayerNormZero``
(the same weights in each; the output layer reads block 0's), splits the fused qkv projection
into ``to_q``/``to_k``/``to_v`` and takes class labels where ldmlab takes their embedding
(``cond["vector"]`` = the conditioner's table row, of width ``hidden_size``). Expressible: fixed
sin-cos positions, ``mlp_ratio`` 4, no cross-attention or concat inputs, a vector condition that
is one ``ClassEmbedder``'s table (``label_table`` finds it in a ``Conditioner``); anything else is
a ``FieldError`` naming the key.
"""

from __future__ import annotations

import torch
from diffusers import DiTTransformer2DModel

from ldmlab.backbones.dit import DiT
from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.utils.errors import FieldError, part_key

# ldmlab DiT sub-module → diffusers (per block i)
_BLOCK = (("modulation", "norm1.linear"), ("attn.proj", "attn1.to_out.0"),
          ("mlp.fc1", "ff.net.0.proj"), ("mlp.fc2", "ff.net.2"))


def diffusers_dit_config(dit: DiT, num_classes: int) -> dict:
    """The ``DiTTransformer2DModel`` config of ``dit``'s architecture."""
    return {"num_attention_heads": dit.num_heads, "attention_head_dim": dit.hidden_size // dit.num_heads,
            "in_channels": dit.in_channels, "out_channels": dit.out_channels, "num_layers": dit.depth,
            "sample_size": dit.input_size, "patch_size": dit.patch_size, "num_embeds_ada_norm": num_classes,
            "norm_eps": 1e-6, "norm_type": "ada_norm_zero", "norm_elementwise_affine": False,
            "activation_fn": "gelu-approximate", "attention_bias": True}


def label_table(conditioner: Conditioner) -> ClassEmbedder | None:
    """The conditioner's one ``vector`` embedder when it is a ``ClassEmbedder`` (DiT's label
    embedding), else None (no vector, several, or another kind: ``check_exportable`` refuses)."""
    vectors = [e for e in conditioner.embedders.values() if e.output_type == "vector"]
    return vectors[0] if len(vectors) == 1 and isinstance(vectors[0], ClassEmbedder) else None


def check_exportable(dit: DiT, labels: ClassEmbedder | None) -> None:
    """Raise a ``FieldError`` for what ``DiTTransformer2DModel`` cannot express."""
    if dit.context_dim is not None:
        raise FieldError("backbone", "context_dim", "is set: the DiT cross-attends to a context, and "
                         "diffusers' DiTTransformer2DModel has no cross-attention",
                         "export a class-conditional DiT ({key}=null, conditioner=class_vector)")
    if dit.concat_channels:
        raise FieldError("backbone", "concat_channels", "is not 0; DiTTransformer2DModel takes no concat "
                         "inputs", "export a DiT trained with {key}=0")
    if isinstance(dit.pos_embed, torch.nn.Parameter):
        raise FieldError("backbone", "pos_embed", "is learned; DiTTransformer2DModel has fixed sin-cos "
                         "positions", "export a DiT trained with {key}=sincos")
    if dit.mlp_ratio != 4:
        raise FieldError("backbone", "mlp_ratio", f"is {dit.mlp_ratio}; DiTTransformer2DModel's MLP is 4× "
                         "wide", "export a DiT trained with {key}=4")
    if labels is None or dit.vector_dim != dit.hidden_size or labels.embed_dim != dit.hidden_size:
        raise FieldError("backbone", "vector_dim", "must be the hidden_size and fed by one class table: "
                         "DiTTransformer2DModel embeds class labels itself",
                         f"train with {part_key('conditioner')}=class_vector (its table as wide as "
                         "the DiT)")


def to_diffusers_dit(dit: DiT, labels: ClassEmbedder) -> DiTTransformer2DModel:
    """An architecture-matched ``DiTTransformer2DModel`` carrying ``dit``'s weights and the label
    table of ``labels`` (whose row ``num_classes`` is the CFG null), in eval mode."""
    check_exportable(dit, labels)
    theirs = DiTTransformer2DModel(**diffusers_dit_config(dit, labels.num_classes))
    ours = dit.state_dict()
    state = {}
    for mine, theirs_name in (("patch_embed.proj", "pos_embed.proj"), ("final.modulation", "proj_out_1"),
                              ("final.linear", "proj_out_2")):
        for param in ("weight", "bias"):
            state[f"{theirs_name}.{param}"] = ours[f"{mine}.{param}"]
    for i in range(dit.depth):
        block, their = f"blocks.{i}.", f"transformer_blocks.{i}."
        emb = their + "norm1.emb."
        for param in ("weight", "bias"):
            state[emb + f"timestep_embedder.linear_1.{param}"] = ours[f"time_embed.mlp.0.{param}"]
            state[emb + f"timestep_embedder.linear_2.{param}"] = ours[f"time_embed.mlp.2.{param}"]
            for mine, theirs_name in _BLOCK:
                state[their + f"{theirs_name}.{param}"] = ours[block + f"{mine}.{param}"]
            qkv = ours[block + f"attn.qkv.{param}"].chunk(3)
            for name, chunk in zip(("to_q", "to_k", "to_v"), qkv, strict=True):
                state[their + f"attn1.{name}.{param}"] = chunk
        state[emb + "class_embedder.embedding_table.weight"] = labels.table.weight
    theirs.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return theirs.eval()


@torch.no_grad()
def assert_same_dit_outputs(
    dit: DiT, labels: ClassEmbedder, theirs: DiTTransformer2DModel, x: torch.Tensor, t: torch.Tensor,
    classes: torch.Tensor, rtol: float = 1e-5,
) -> float:
    """max |dit(x, t, {vector: table[classes]}) − theirs(x, t, classes)| (classes may hold the null
    index ``num_classes``); raises ``RuntimeError`` above ``rtol`` × max |ours| (a conversion bug)."""
    expected = dit(x, t, {"vector": labels.table(classes)})
    got = theirs(x, timestep=t, class_labels=classes, return_dict=False)[0]
    diff, scale = float((expected - got).abs().max()), float(expected.abs().max())
    if not diff <= rtol * scale:
        raise RuntimeError(f"diffusers DiT differs from ldmlab's: max |diff| = {diff:.3g} > {rtol:g} × "
                           f"max |output| = {rtol * scale:.3g}")
    return diff
