"""Combines embedders into the backbone's ``cond`` dict, with classifier-free-guidance dropout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ldmlab.conditioning.base import Embedder
from ldmlab.utils.errors import FieldError, part_key

if TYPE_CHECKING:
    from ldmlab.backbones.base import Denoiser

Encoded = tuple[torch.Tensor, torch.Tensor | None]


class Conditioner(nn.Module):
    """Runs each embedder on its inputs in the batch (``Embedder.inputs``, by default
    ``batch[embedder.input_key]``) and merges the outputs by type.

    crossattn outputs are concatenated along L (with a ``"crossattn_mask"`` (B, L) bool when
    any embedder returns a mask), vector outputs along D, concat outputs along C. In training
    mode each sample's embedding is replaced by the embedder's learned null with probability
    ``p_uncond``, independently per sample and per embedder; never in eval mode. No
    embedders = unconditional model: the output is ``{}``.

    ``embedders``: a list, or a name → embedder mapping (Hydra-friendly; None entries are
    skipped, so an override can switch one off). ``p_uncond``, when given, sets every
    embedder's dropout probability (the one knob a CFG sweep turns: ``conditioner.p_uncond``).
    In eval mode, an embedder whose input is absent from the batch gets its null (so a
    hybrid model can be sampled from one modality).
    """

    def __init__(
        self,
        embedders: Sequence[Embedder] | Mapping[str, Embedder | None] = (),
        p_uncond: float | None = None,
    ) -> None:
        super().__init__()
        if p_uncond is not None and not 0.0 <= p_uncond <= 1.0:
            raise FieldError("conditioner", "p_uncond", f"must lie in [0, 1], got {p_uncond}",
                             "e.g. {key}=0.1")
        named = embedders.items() if isinstance(embedders, Mapping) else enumerate(embedders)
        self.embedders = nn.ModuleDict()
        for name, embedder in named:
            if embedder is None:
                continue
            if not isinstance(embedder, Embedder):
                raise TypeError(
                    f"{part_key('conditioner', f'embedders.{name}')} must be an ldmlab Embedder (give it a "
                    f"_target_), got {type(embedder).__name__}"
                )
            if p_uncond is not None:
                embedder.p_uncond = float(p_uncond)
            self.embedders[str(name)] = embedder
        dims = {name: e.null(1).shape[-1] for name, e in self._of_type("crossattn")}
        if len(set(dims.values())) > 1:
            raise ValueError(
                f"crossattn embedders must share one embedding dim (the backbone's context_dim), got "
                f"{dims}; make their embed_dim equal"
            )

    def reads(self) -> set[str]:
        """The batch keys the embedders may read (``Embedder.reads``)."""
        return set().union(*(embedder.reads() for embedder in self.embedders.values()))

    @property
    def context_dim(self) -> int | None:
        """Width D of the crossattn output, or None without crossattn embedders."""
        dims = [e.null(1).shape[-1] for _, e in self._of_type("crossattn")]
        return dims[0] if dims else None

    @property
    def vector_dim(self) -> int | None:
        """Total width of the vector output, or None without vector embedders."""
        dims = [e.null(1).shape[-1] for _, e in self._of_type("vector")]
        return sum(dims) if dims else None

    @property
    def concat_channels(self) -> int:
        """Total channels of the concat output (0 without concat embedders)."""
        return sum(e.null(1).shape[1] for _, e in self._of_type("concat"))

    def forward(
        self, batch: Mapping[str, Any], force_uncond: bool = False, batch_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        """``force_uncond=True`` gives every embedder's null (see ``unconditional``).
        ``batch_size`` is needed only when no embedder's input is in the batch."""
        encoded: dict[str, list[Encoded]] = {"crossattn": [], "vector": [], "concat": []}
        found = {n: e.inputs(batch) for n, e in self.embedders.items()}
        present = {n: e for n, e in self.embedders.items() if found[n] is not None}
        missing = {n: e for n, e in self.embedders.items() if n not in present}
        if missing and self.training:
            name, embedder = next(iter(missing.items()))
            raise KeyError(
                f"{part_key('conditioner', f'embedders.{name}')} reads batch['{embedder.input_key}'] but "
                f"the batch has keys {sorted(batch)}; set its input_key or provide the key in the data"
            )
        for name, embedder in present.items():
            inputs = found[name]
            if batch_size not in (None, len(inputs)):
                raise ValueError(
                    f"batch['{embedder.input_key}'] has {len(inputs)} entries, other "
                    f"conditioning inputs have {batch_size}"
                )
            batch_size = len(inputs)
            if force_uncond:
                emb, mask = embedder.null(batch_size), embedder.null_mask(batch_size)
            else:
                emb, mask = embedder.encode(inputs)
                if self.training:  # also at p_uncond=0: keeps the null in the graph for DDP
                    emb, mask = _drop_to_null(embedder, emb, mask)
            encoded[embedder.output_type].append((emb, mask))
        if missing and batch_size is None:
            raise ValueError("pass batch_size: no conditioning input is in the batch")
        for embedder in missing.values():
            encoded[embedder.output_type].append(
                (embedder.null(batch_size), embedder.null_mask(batch_size))
            )
        return _merge(encoded)

    @property
    def time_dependent(self) -> bool:
        """True when an embedder reads the timestep (``time_conditioned``, LRDM): generation then
        re-encodes the condition at every step (``ldmlab.sampling.generate.conditioned_model``)."""
        return any(getattr(e, "time_conditioned", False) for e in self.embedders.values())

    def forward_centre(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        """x̂ (B, C, h, w) that centres the forward process, from the embedder built with
        ``centre_forward_process`` (never dropped to its null); None: the standard process."""
        for embedder in self.embedders.values():
            if getattr(embedder, "centre_forward_process", False):
                inputs = embedder.inputs(batch)
                return None if inputs is None else embedder(inputs)
        return None

    def check_num_classes(self, num_classes: int) -> None:
        """Raise a ConfigError if a class embedder has fewer rows than the data has classes (checked
        once here: the per-batch range check would be a host sync on accelerators)."""
        for name, embedder in self.embedders.items():
            rows = getattr(embedder, "num_classes", None)
            if getattr(embedder, "input_key", None) == "label" and rows is not None and rows < num_classes:
                raise FieldError("conditioner", f"embedders.{name}.num_classes",
                                 f"is {rows} but the data has {num_classes} classes",
                                 f"{{key}}={num_classes}")

    def check_latent_shape(self, channels: int, side: int, where: str) -> None:
        """Raise a ConfigError unless every concat output is ``side``×``side`` and a forward-process
        centre has the latents' ``channels``; ``where`` describes the latents for the message."""
        for name, embedder in self._of_type("concat"):
            field = f"embedders.{name}"
            _, have, size, _ = embedder.null(1).shape
            if size != side:
                raise FieldError("conditioner", f"{field}.size",
                                 f"is {size}, but the model works on {side}×{side} ({where})",
                                 f"{{key}}={side}")
            if getattr(embedder, "centre_forward_process", False) and have != channels:
                raise FieldError("conditioner", f"{field}.centre_forward_process",
                                 f"centres x_t on a {have}-channel x̂, the diffusion runs on "
                                 f"{channels}-channel latents ({where})",
                                 "{key}=false (or first_stage=identity)")

    def unconditional(
        self, batch: Mapping[str, Any], batch_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        """All-null outputs with the shapes of ``forward(batch)`` (the CFG branch)."""
        return self(batch, force_uncond=True, batch_size=batch_size)

    def check_compatible(self, backbone: Denoiser) -> None:
        """Raise one error listing every ``backbone.*`` key that disagrees with this conditioner."""
        pairs = (
            (part_key("backbone", "context_dim"), backbone.context_dim, self.context_dim),
            (part_key("backbone", "vector_dim"), backbone.vector_dim, self.vector_dim),
            (part_key("backbone", "concat_channels"), backbone.concat_channels, self.concat_channels),
        )
        problems = [
            f"{key}={built} but the conditioner gives {needed}; set {key}: {needed}"
            for key, built, needed in pairs
            if built != needed
        ]
        if problems:
            raise ValueError("Backbone and conditioner disagree: " + "; ".join(problems))

    def _of_type(self, output_type: str) -> list[tuple[str, Embedder]]:
        return [(n, e) for n, e in self.embedders.items() if e.output_type == output_type]


def _drop_to_null(embedder: Embedder, emb: torch.Tensor, mask: torch.Tensor | None) -> Encoded:
    """Replace each sample by the null with probability ``embedder.p_uncond``."""
    batch_size = emb.shape[0]
    drop = torch.rand(batch_size, device=emb.device) < embedder.p_uncond
    emb = torch.where(drop.view(-1, *[1] * (emb.ndim - 1)), embedder.null(batch_size), emb)
    null_mask = embedder.null_mask(batch_size)
    if mask is None and null_mask is None:
        return emb, None
    mask = torch.where(drop[:, None], _mask_or_all(null_mask, emb), _mask_or_all(mask, emb))
    return emb, mask


def _mask_or_all(mask: torch.Tensor | None, emb: torch.Tensor) -> torch.Tensor:
    """``mask``, or an all-True (B, L) mask for a crossattn embedding (B, L, D)."""
    if mask is not None:
        return mask
    return torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)


def _merge(encoded: dict[str, list[Encoded]]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if crossattn := encoded["crossattn"]:
        out["crossattn"] = torch.cat([emb for emb, _ in crossattn], dim=1)
        if any(mask is not None for _, mask in crossattn):
            out["crossattn_mask"] = torch.cat([_mask_or_all(m, e) for e, m in crossattn], dim=1)
    if encoded["vector"]:
        out["vector"] = torch.cat([emb for emb, _ in encoded["vector"]], dim=-1)
    if encoded["concat"]:
        out["concat"] = torch.cat([emb for emb, _ in encoded["concat"]], dim=1)
    return out
