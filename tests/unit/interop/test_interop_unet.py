"""ldmlab UNet → diffusers UNet2DConditionModel: equal outputs, detected mismatches, clear refusals."""

from __future__ import annotations

import pytest
import torch

from ldmlab.backbones.unet import UNet
from ldmlab.interop.unet2d import assert_same_outputs, diffusers_unet_config, to_diffusers_unet
from ldmlab.utils.errors import ConfigError

CROSS = {"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [1, 2],
         "num_heads": 4, "context_dim": 24}
VECTOR_CONCAT = {"model_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": 2,
                 "attention_resolutions": [2], "num_heads": 2, "transformer_depth": 2, "context_dim": 8,
                 "vector_dim": 6, "concat_channels": 3, "use_scale_shift_norm": False}


def randomised(config: dict) -> UNet:
    """A UNet whose every weight is random (the zero-initialised output conv and proj_outs too)."""
    unet = UNet(in_channels=4, out_channels=4, **config).eval()
    with torch.no_grad():
        for param in unet.parameters():
            param.copy_(0.3 * torch.randn_like(param))
    return unet


def inputs(unet: UNet, batch: int = 3, size: int = 8) -> tuple[torch.Tensor, torch.Tensor, dict]:
    x, t = torch.randn(batch, 4, size, size), torch.tensor([0, 417, 999])
    mask = torch.tensor([[True] * 5, [True, False, True, False, False], [False] * 4 + [True]])
    cond = {"crossattn": torch.randn(batch, 5, unet.context_dim), "crossattn_mask": mask}
    if unet.vector_dim:
        cond["vector"] = torch.randn(batch, unet.vector_dim)
    if unet.concat_channels:
        cond["concat"] = torch.randn(batch, unet.concat_channels, size, size)
    return x, t, cond


@pytest.mark.parametrize("config", [CROSS, VECTOR_CONCAT], ids=["crossattn", "vector+concat+additive"])
def test_diffusers_unet_matches(config: dict) -> None:
    unet = randomised(config)
    theirs = to_diffusers_unet(unet)
    x, t, cond = inputs(unet)
    with torch.no_grad():
        assert unet(x, t, cond).std() > 0.1  # a non-trivial output, so the comparison can fail
    diff = assert_same_outputs(unet, theirs, x, t, cond, rtol=1e-5)
    assert diff < 1e-4


def test_config_reads_the_architecture() -> None:
    config = diffusers_unet_config(randomised(VECTOR_CONCAT), sample_size=8)
    assert config["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    assert config["up_block_types"] == ["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    assert config["in_channels"] == 7 and config["block_out_channels"] == [32, 64, 64]
    assert config["layers_per_block"] == 2
    assert (config["class_embed_type"], config["resnet_time_scale_shift"]) == ("simple_projection", "default")
    assert (config["attention_head_dim"], config["transformer_layers_per_block"]) == (2, 2)


def test_wrong_mapping_is_detected() -> None:
    unet = randomised(CROSS)
    theirs = to_diffusers_unet(unet)
    attn = theirs.down_blocks[1].attentions[0].transformer_blocks[0].attn2
    with torch.no_grad():  # a key/value mix-up, same shapes
        key = attn.to_k.weight.clone()
        attn.to_k.weight.copy_(attn.to_v.weight)
        attn.to_v.weight.copy_(key)
    with pytest.raises(RuntimeError, match="differs"):
        assert_same_outputs(unet, theirs, *inputs(unet))


@pytest.mark.parametrize(("change", "key"), [({"context_dim": None}, "backbone.context_dim"),
                                             ({"model_channels": 16}, "backbone.model_channels"),
                                             ({"channel_mult": [2, 2]}, "backbone.channel_mult")])
def test_inexpressible_unet_is_config_error(change: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        to_diffusers_unet(UNet(4, 4, **(CROSS | change)))
    assert err.value.key == key
