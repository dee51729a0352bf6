"""ldmlab KL autoencoder → diffusers ``AutoencoderKL``: the same network with renamed weights.

The layers correspond one to one (ResNet blocks, right/bottom-padded downsampling, single-head mid
attention, nearest upsampling), except the encoder head: ldmlab's ``conv_out`` (3×3, to z_channels)
followed by ``quant_conv`` (1×1, to 2·embed_dim) is one linear map, exported fused into diffusers'
``encoder.conv_out`` (to 2·embed_dim) with diffusers' ``quant_conv`` set to the identity.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import nn

from ldmlab.autoencoder.model import Autoencoder
from ldmlab.autoencoder.regularizers.kl import KLRegularizer
from ldmlab.interop.keys import group_key
from ldmlab.nn.attention import SelfAttention2d
from ldmlab.nn.resample import Downsample, Upsample
from ldmlab.nn.resnet import ResnetBlock
from ldmlab.utils.errors import ConfigError, FieldError

RESNET_NAMES = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
                "skip": "conv_shortcut"}


def to_diffusers_vae(autoencoder: Autoencoder, scaling_factor: float) -> AutoencoderKL:
    """A diffusers ``AutoencoderKL`` (CPU, float32, eval) computing the same ``encode`` (posterior
    mean and log-variance) and ``decode`` as ``autoencoder``; ``scaling_factor`` (the stage-2
    latent scale) goes into its config. An autoencoder diffusers cannot express (VQ, symmetric
    downsampling padding, ...) is a ``ConfigError`` naming what to retrain with."""
    vae = AutoencoderKL(**diffusers_vae_config(autoencoder, scaling_factor))
    state = {}
    for prefix, ours in _module_pairs(autoencoder, vae):
        state |= {f"{prefix}.{name}": tensor for name, tensor in _renamed(ours).items()}
    state |= _fused_encoder_head(autoencoder)
    vae.load_state_dict(state, strict=True)
    return vae.eval()


def diffusers_vae_config(autoencoder: Autoencoder, scaling_factor: float) -> dict:
    """The ``AutoencoderKL`` init arguments describing ``autoencoder``'s architecture."""
    if not isinstance(autoencoder.regularizer, KLRegularizer):
        group = group_key("autoencoder", "regularizer")
        raise ConfigError(group, f"is {type(autoencoder.regularizer).__name__}; "
                          "diffusers' AutoencoderKL is a KL autoencoder", f"retrain with {group}=kl")
    encoder, decoder = autoencoder.encoder, autoencoder.decoder
    if encoder.downsample_padding != "asymmetric":
        raise FieldError("autoencoder", "encoder.downsample_padding", "is symmetric (also every checkpoint "
                         "written before the option), diffusers' VAE pads right/bottom",
                         "retrain with {key}=asymmetric (the presets' value)")
    enc_levels = _levels(encoder.down, Downsample)
    dec_levels = _levels(decoder.up, Upsample)
    widths = [level[-1].conv2.out_channels for level in enc_levels]
    layers = len(enc_levels[0])
    if encoder.conv_in.out_channels != widths[0]:
        raise FieldError("autoencoder", "encoder.ch_mult", "does not start with 1 (diffusers' first stage "
                         "keeps conv_in's width)", "retrain with {key}=[1, ...]")
    if decoder.conv_in.in_channels != autoencoder.embed_dim:
        raise FieldError("autoencoder", "encoder.z_channels", f"is {decoder.conv_in.in_channels}, diffusers' "
                         f"decoder reads the {autoencoder.embed_dim} latent channels directly",
                         f"retrain with {{key}}={autoencoder.embed_dim}")
    attention = isinstance(encoder.mid[1], SelfAttention2d)
    mirrored = ([level[-1].conv2.out_channels for level in reversed(dec_levels)] == widths
                and all(len(level) == layers for level in enc_levels)
                and all(len(level) == layers + 1 for level in dec_levels)
                and attention == isinstance(decoder.mid[1], SelfAttention2d))
    if not mirrored:
        raise FieldError("autoencoder", "decoder", "does not mirror the encoder (as diffusers' VAE does)",
                         "retrain with the decoder's ch, ch_mult, num_res_blocks and mid_attention "
                         "interpolated from the encoder's (as in conf/autoencoder/f4.yaml)")
    groups = {m.num_groups for m in autoencoder.modules() if isinstance(m, nn.GroupNorm)}
    if len(groups) != 1:
        raise FieldError("autoencoder", "encoder.ch", f"gives GroupNorm group counts {sorted(groups)}; "
                         "diffusers uses one count", "retrain with {key}=32")
    return {
        "in_channels": encoder.in_channels, "out_channels": decoder.conv_out.out_channels,
        "down_block_types": ["DownEncoderBlock2D"] * len(widths),
        "up_block_types": ["UpDecoderBlock2D"] * len(widths),
        "block_out_channels": widths, "layers_per_block": layers, "act_fn": "silu",
        "latent_channels": autoencoder.embed_dim, "norm_num_groups": groups.pop(),
        "scaling_factor": float(scaling_factor),
        "mid_block_add_attention": attention,
    }


def _levels(stages: nn.Sequential, resample: type[nn.Module]) -> list[list[ResnetBlock]]:
    """The ResNet blocks of an encoder/decoder stack, grouped into resolution levels."""
    levels: list[list[ResnetBlock]] = [[]]
    for module in stages:
        if isinstance(module, resample):
            levels.append([])
        else:
            levels[-1].append(module)
    return levels


def _module_pairs(autoencoder: Autoencoder, vae: AutoencoderKL) -> list[tuple[str, nn.Module]]:
    """(diffusers prefix, ldmlab module) for every layer but the encoder head."""
    encoder, decoder = autoencoder.encoder, autoencoder.decoder
    resnets = [m for m in encoder.down if isinstance(m, ResnetBlock)]
    downs = [m for m in encoder.down if isinstance(m, Downsample)]
    their_resnets = [f"encoder.down_blocks.{i}.resnets.{j}" for i, block in enumerate(vae.encoder.down_blocks)
                     for j in range(len(block.resnets))]
    pairs = [("encoder.conv_in", encoder.conv_in), ("encoder.conv_norm_out", encoder.norm_out)]
    pairs += list(zip(their_resnets, resnets, strict=True))
    pairs += [(f"encoder.down_blocks.{i}.downsamplers.0", down) for i, down in enumerate(downs)]
    pairs += _mid_pairs("encoder", encoder.mid)
    resnets = [m for m in decoder.up if isinstance(m, ResnetBlock)]
    ups = [m for m in decoder.up if isinstance(m, Upsample)]
    their_resnets = [f"decoder.up_blocks.{i}.resnets.{j}" for i, block in enumerate(vae.decoder.up_blocks)
                     for j in range(len(block.resnets))]
    pairs += [("decoder.conv_in", decoder.conv_in), ("decoder.conv_norm_out", decoder.norm_out),
              ("decoder.conv_out", decoder.conv_out), ("post_quant_conv", autoencoder.post_quant_conv)]
    pairs += list(zip(their_resnets, resnets, strict=True))
    pairs += [(f"decoder.up_blocks.{i}.upsamplers.0", up) for i, up in enumerate(ups)]
    pairs += _mid_pairs("decoder", decoder.mid)
    return pairs


def _mid_pairs(side: str, mid: nn.Sequential) -> list[tuple[str, nn.Module]]:
    pairs = [(f"{side}.mid_block.resnets.0", mid[0]), (f"{side}.mid_block.resnets.1", mid[2])]
    if isinstance(mid[1], SelfAttention2d):
        pairs.append((f"{side}.mid_block.attentions.0", mid[1]))
    return pairs


@torch.no_grad()
def _renamed(ours: nn.Module) -> dict[str, torch.Tensor]:
    """``ours``'s parameters under diffusers' local names (attention: qkv split, 1×1 convs → linear)."""
    state = ours.state_dict()
    if isinstance(ours, ResnetBlock):
        return {f"{RESNET_NAMES[name.split('.')[0]]}.{name.split('.')[1]}": t for name, t in state.items()}
    if isinstance(ours, SelfAttention2d):
        renamed = {f"group_norm.{kind}": state[f"norm.{kind}"] for kind in ("weight", "bias")}
        for kind in ("weight", "bias"):
            q, k, v = _linear(state[f"qkv.{kind}"]).chunk(3)
            renamed |= {f"to_q.{kind}": q, f"to_k.{kind}": k, f"to_v.{kind}": v,
                        f"to_out.0.{kind}": _linear(state[f"proj.{kind}"])}
        return renamed
    return state  # convs, norms, resampling convs: same local names


def _linear(tensor: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv's weight (O, I, 1, 1) as a linear weight (O, I); a bias unchanged."""
    return tensor[..., 0, 0] if tensor.dim() == 4 else tensor


@torch.no_grad()
def _fused_encoder_head(autoencoder: Autoencoder) -> dict[str, torch.Tensor]:
    """diffusers' ``encoder.conv_out`` = ldmlab's quant_conv ∘ conv_out (fused in float64) and an
    identity ``quant_conv`` (B, 2·embed_dim, h, w) → same."""
    conv, quant = autoencoder.encoder.conv_out, autoencoder.quant_conv
    project = quant.weight.double()[:, :, 0, 0]
    moments = project.shape[0]
    return {
        "encoder.conv_out.weight": torch.einsum("oz,zchw->ochw", project, conv.weight.double()).float(),
        "encoder.conv_out.bias": (project @ conv.bias.double() + quant.bias.double()).float(),
        "quant_conv.weight": torch.eye(moments)[:, :, None, None],
        "quant_conv.bias": torch.zeros(moments),
    }
