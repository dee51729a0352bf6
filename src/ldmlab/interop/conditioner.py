"""An ldmlab ``Conditioner`` for diffusers pipelines: its weights and how to build their inputs."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.utils.atomic_output import write_json


@torch.no_grad()
def save_conditioner(conditioner: Conditioner, folder: Path) -> float:
    """Weights (safetensors) + ``conditioner.json``; class-embedding lookups are re-done from the
    reloaded file and compared with the embedders (max |diff|; 0 without class embedders)."""
    folder.mkdir()
    save_file({k: v.detach().clone().contiguous() for k, v in conditioner.state_dict().items()},
              str(folder / "model.safetensors"))
    embedders = []
    for name, embedder in conditioner.embedders.items():
        spec = {"name": name, "class": f"{type(embedder).__module__}.{type(embedder).__name__}",
                "output_type": embedder.output_type, "input_key": embedder.input_key}
        if isinstance(embedder, ClassEmbedder):
            spec |= {"table": f"embedders.{name}.table.weight", "num_classes": embedder.num_classes,
                     "null_index": embedder.num_classes, "recipe": "table[labels] (B, D); crossattn: "
                     "[:, None, :] (B, 1, D); unconditional (CFG): labels = null_index"}
        embedders.append(spec)
    write_json(folder / "conditioner.json", {
        "embedders": embedders,
        "merge": "crossattn outputs, concatenated along L in this order: encoder_hidden_states (B, L, D) "
                 "(with encoder_attention_mask when an embedder masks); vector outputs concatenated along D: "
                 "class_labels; concat outputs concatenated along C: appended to the sample's channels",
    })
    weights, diff = load_file(str(folder / "model.safetensors")), 0.0
    for spec in embedders:
        if "table" in spec:
            embedder, labels = conditioner.embedders[spec["name"]], torch.arange(spec["num_classes"])
            table = weights[spec["table"]]
            lookup = table[labels][:, None] if spec["output_type"] == "crossattn" else table[labels]
            null = table[spec["null_index"]].expand_as(embedder.null(1)[0])
            diff = max(diff, float((lookup - embedder(labels)).abs().max()),
                       float((null - embedder.null(1)[0]).abs().max()))
    return diff
