"""ldmlab ``UNet`` → diffusers ``UNet2DConditionModel`` (same architecture, every weight copied).

The correspondence: sinusoidal time features [cos, sin] with no frequency shift
(``flip_sin_to_cos=True, freq_shift=0``); FiLM ResBlocks (``resnet_time_scale_shift="scale_shift"``,
additive ones "default"); ``SpatialTransformer`` = ``Transformer2DModel`` with linear projections
(``use_linear_projection=True``; GEGLU feed-forward, LayerNorms, bias-free q/k/v alike); one block
per level, with attention (``CrossAttn*Block2D``) where ``2**level`` is in ``attention_resolutions``;
``unet.num_heads`` is diffusers' ``attention_head_dim`` (a head count there, for historic reasons);
a ``vector`` condition is ``class_embed_type="simple_projection"`` (one Linear added to the time
embedding, passed as ``class_labels``); a ``concat`` condition adds ``in_channels`` (the caller
concatenates it to the sample). What diffusers cannot express exactly is a ``ConfigError``.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from ldmlab.backbones.unet import UNet, UNetStage
from ldmlab.nn.resample import Downsample, Upsample
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.nn.transformer import SpatialTransformer
from ldmlab.utils.errors import ConfigError, FieldError, part_key

# ldmlab sub-module names → diffusers' (whole dotted components, applied in order)
_RENAMES = (
    (".emb_proj.", ".time_emb_proj."),
    (".skip.", ".conv_shortcut."),
    (".blocks.", ".transformer_blocks."),
    (".self_attn.", ".attn1."),
    (".cross_attn.", ".attn2."),
    (".ff.proj_in.", ".ff.net.0.proj."),
    (".ff.proj_out.", ".ff.net.2."),
)


def diffusers_unet_config(unet: UNet, sample_size: int | None = None) -> dict:
    """The ``UNet2DConditionModel`` config of ``unet``'s architecture (read from its modules)."""
    _check_expressible(unet)
    levels = _levels(unet)
    attention = [any(isinstance(m, SpatialTransformer) for s in level for m in s) for level in levels]
    resnets = [m for m in unet.modules() if isinstance(m, ResnetBlock)]
    transformer = next(m for m in unet.modules() if isinstance(m, SpatialTransformer))
    downsamples = [m for m in unet.modules() if isinstance(m, Downsample)]
    asymmetric = any(getattr(m, "padding", "symmetric") == "asymmetric" for m in downsamples)
    return {
        "sample_size": sample_size,
        "in_channels": unet.in_channels + unet.concat_channels,
        "out_channels": unet.out_channels,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "block_out_channels": [level[0][0].conv1.out_channels for level in levels],
        "layers_per_block": len(levels[0]) - (len(levels) > 1),
        "downsample_padding": 0 if asymmetric else 1,
        "mid_block_scale_factor": 1.0,
        "dropout": resnets[0].dropout.p,
        "act_fn": "silu",
        "norm_num_groups": _group_counts(unet).pop(),
        "norm_eps": resnets[0].norm1.eps,
        "cross_attention_dim": unet.context_dim,
        "transformer_layers_per_block": len(transformer.blocks),
        "attention_head_dim": transformer.blocks[0].self_attn.heads,
        "use_linear_projection": True,
        "upcast_attention": False,
        "class_embed_type": "simple_projection" if unet.vector_dim else None,
        "projection_class_embeddings_input_dim": unet.vector_dim,
        "resnet_time_scale_shift": "scale_shift" if resnets[0].scale_shift else "default",
    }


def to_diffusers_unet(unet: UNet, sample_size: int | None = None) -> UNet2DConditionModel:
    """An architecture-matched ``UNet2DConditionModel`` carrying ``unet``'s weights (eval mode)."""
    theirs = UNet2DConditionModel(**diffusers_unet_config(unet, sample_size))
    state = {}
    for ours_prefix, their_prefix in _module_pairs(unet):
        module = unet.get_submodule(ours_prefix)
        for name, tensor in module.state_dict().items():
            key = f".{name}"
            for old, new in _RENAMES:
                key = key.replace(old, new)
            state[their_prefix + key] = tensor.detach().clone()
    theirs.load_state_dict(state, strict=True)  # every diffusers tensor filled, shapes checked
    return theirs.eval()


def diffusers_inputs(x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> dict:
    """ldmlab's ``(x, t, cond)`` as ``UNet2DConditionModel`` keyword arguments."""
    if "concat" in cond:
        x = torch.cat([x, cond["concat"]], dim=1)
    inputs = {"sample": x, "timestep": t, "encoder_hidden_states": cond.get("crossattn"),
              "return_dict": False}
    if "crossattn_mask" in cond:
        inputs["encoder_attention_mask"] = cond["crossattn_mask"]
    if "vector" in cond:
        inputs["class_labels"] = cond["vector"]
    return inputs


@torch.no_grad()
def assert_same_outputs(
    ours: UNet,
    theirs: UNet2DConditionModel,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: dict[str, torch.Tensor],
    rtol: float = 1e-5,
) -> float:
    """max |ours(x, t, cond) − theirs(...)| over the (B, C, h, w) outputs; raises ``RuntimeError``
    when it exceeds ``rtol`` × max |ours| (a conversion bug)."""
    expected = ours(x, t, cond)
    got = theirs(**diffusers_inputs(x, t, cond))[0]
    diff = float((expected - got).abs().max())
    scale = float(expected.abs().max())
    if not diff <= rtol * scale:
        raise RuntimeError(f"diffusers UNet differs from ldmlab's: max |diff| = {diff:.3g} "
                           f"> {rtol:g} × max |output| = {rtol * scale:.3g}")
    return diff


def _levels(unet: UNet) -> list[list[UNetStage]]:
    """The down stages grouped by level; a level's last stage is its Downsample (not the deepest)."""
    levels: list[list[UNetStage]] = [[]]
    for stage in unet.down_stages:
        levels[-1].append(stage)
        if isinstance(stage[0], Downsample):
            levels.append([])
    return levels


def _module_pairs(unet: UNet) -> list[tuple[str, str]]:
    """(ldmlab module path, diffusers module path) for every module that holds weights."""
    pairs = [("time_embed.mlp.0", "time_embedding.linear_1"), ("time_embed.mlp.2", "time_embedding.linear_2"),
             ("input_conv", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")]
    if unet.vector_embed is not None:
        pairs.append(("vector_embed", "class_embedding"))
    index = 0
    for level, stages in enumerate(_levels(unet)):
        pairs += _stage_pairs(unet, "down_stages", index, stages, f"down_blocks.{level}")
        index += len(stages)
    pairs += _stage_pairs(unet, "", 0, [unet.middle], "mid_block")
    per_level = len(unet.up_stages) // len(unet.channel_mult)  # num_res_blocks + 1, deepest level first
    for block in range(len(unet.channel_mult)):
        first = block * per_level
        stages = list(unet.up_stages[first:first + per_level])
        pairs += _stage_pairs(unet, "up_stages", first, stages, f"up_blocks.{block}")
    return pairs


def _stage_pairs(
    unet: UNet, parent: str, first: int, stages: list[UNetStage], block: str
) -> list[tuple[str, str]]:
    """Pairs for consecutive stages of one diffusers block: its resnets, attentions, resamplers."""
    pairs, counts = [], {"resnets": 0, "attentions": 0}
    for offset, stage in enumerate(stages):
        path = "middle" if stage is unet.middle else f"{parent}.{first + offset}"
        for i, layer in enumerate(stage):
            if isinstance(layer, Downsample | Upsample):
                kind = "downsamplers" if isinstance(layer, Downsample) else "upsamplers"
                pairs.append((f"{path}.{i}", f"{block}.{kind}.0"))
                continue
            kind = "resnets" if isinstance(layer, ResnetBlock) else "attentions"
            pairs.append((f"{path}.{i}", f"{block}.{kind}.{counts[kind]}"))
            counts[kind] += 1
    return pairs


def _group_counts(unet: UNet) -> set[int]:
    return {m.num_groups for m in unet.modules() if isinstance(m, nn.GroupNorm)}


def _check_expressible(unet: UNet) -> None:
    """A ``ConfigError`` naming the ``backbone`` key for what ``UNet2DConditionModel`` cannot express."""
    if not isinstance(unet, UNet):
        key = part_key("backbone")
        raise ConfigError(key, f"{type(unet).__name__} has no diffusers UNet2DConditionModel equivalent",
                          f"export a model trained with {key}=small or {key}=base")
    if unet.context_dim is None:
        raise FieldError(
            "backbone", "context_dim", "is null, so the UNet attends with SelfAttention2d, but diffusers' "
            "UNet2DConditionModel has no self-attention middle block (its UNetMidBlock2D is built "
            "without attention)", "train with a cross-attention conditioner "
            f"(e.g. {part_key('conditioner')}=class, which sets {{key}})")
    if unet.channel_mult[0] != 1:
        mult = ",".join(map(str, [1, *unet.channel_mult[1:]]))
        raise FieldError("backbone", "channel_mult", f"starts with {unet.channel_mult[0]}, but diffusers' "
                         "conv_in and time features are block_out_channels[0] = the first level's width",
                         f"retrain with {{key}}=[{mult}]")
    groups = _group_counts(unet)
    if len(groups) > 1:
        raise FieldError(
            "backbone", "model_channels", f"the UNet's GroupNorms use {sorted(groups)} groups (the largest "
            "divisor ≤ 32 of each channel count) but diffusers has one norm_num_groups for all",
            "train with {key} a multiple of 32 (e.g. {key}=32)")
    eps = {m.eps for m in unet.modules() if isinstance(m, nn.GroupNorm)}
    if len(eps) > 1:
        raise ConfigError(part_key("backbone"), f"GroupNorm eps differ ({sorted(eps)}); diffusers has one "
                          "norm_eps", "use ldmlab.nn.normalization.group_norm throughout")
