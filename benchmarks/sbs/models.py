"""ldmlab models from the composed Hydra configs, and diffusers models built to the same architecture."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    """The config exactly as the CLI composes it (hydra node included, so paths resolve)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(name, overrides=overrides or [], return_hydra_config=True)


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def unet_kwargs(cfg: DictConfig) -> dict:
    """Our UNet's constructor arguments, resolved (no ``_target_``)."""
    kwargs = OmegaConf.to_container(cfg.backbone, resolve=True)
    kwargs.pop("_target_")
    return kwargs


def diffusers_unet(kw: dict):
    """``UNet2DConditionModel`` with the layout of ``ldmlab.backbones.unet.UNet(**kw)`` (cross-attention
    UNet): same widths, blocks per level, attention levels, heads, FiLM ResBlocks, linear transformer
    projections, GroupNorm(32, eps 1e-6) and cos-first sinusoidal time features."""
    from diffusers import UNet2DConditionModel

    mult, attn = kw["channel_mult"], set(kw["attention_resolutions"])
    cross = [2**level in attn for level in range(len(mult))]
    return UNet2DConditionModel(
        sample_size=8, in_channels=kw["in_channels"], out_channels=kw["out_channels"],
        block_out_channels=tuple(kw["model_channels"] * m for m in mult),
        layers_per_block=kw["num_res_blocks"],
        down_block_types=tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross),
        up_block_types=tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cross)),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=kw["context_dim"],
        attention_head_dim=kw["num_heads"],  # diffusers' legacy name: this is the head count
        transformer_layers_per_block=kw["transformer_depth"], use_linear_projection=True,
        resnet_time_scale_shift="scale_shift" if kw["use_scale_shift_norm"] else "default",
        norm_num_groups=32, norm_eps=1e-6, flip_sin_to_cos=True, freq_shift=0, dropout=kw["dropout"],
    )


def our_autoencoder(overrides: list[str] | None = None):
    """The default stage-1 autoencoder (KL, f=4), randomly initialised, and its resolved config."""
    cfg = compose_config("train_ae", overrides)
    return instantiate(cfg.autoencoder), OmegaConf.to_container(cfg.autoencoder, resolve=True)


def diffusers_vae(ae_cfg: dict, scaling_factor: float = 1.0):
    """``AutoencoderKL`` with our encoder/decoder layout (widths, blocks, mid attention, GroupNorm eps).
    diffusers' encoder emits 2·latent channels directly (ours: z_channels then a 1×1 quant conv to
    2·embed_dim), so the two differ by a few thousand head parameters; both counts are printed."""
    from diffusers import AutoencoderKL

    enc = ae_cfg["encoder"]
    widths = tuple(enc["ch"] * m for m in enc["ch_mult"])
    n = len(widths)
    vae = AutoencoderKL(
        in_channels=enc["in_channels"], out_channels=ae_cfg["decoder"]["out_channels"],
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=widths, layers_per_block=enc["num_res_blocks"],
        latent_channels=ae_cfg["embed_dim"],
        norm_num_groups=32, sample_size=32, scaling_factor=scaling_factor,
        mid_block_add_attention=enc["mid_attention"],
    )
    for module in vae.modules():  # ours uses eps 1e-6 everywhere; diffusers' VAE norms already do
        if isinstance(module, nn.GroupNorm):
            module.eps = 1e-6
    return vae
