"""module.compile: the trained UNet is compiled in place, the EMA copy stays eager."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import REPO, TINY_LDM, compose_config


def _module(ae, compile: bool):
    cfg = compose_config("train_ldm", [f"first_stage.ckpt={ae}", *TINY_LDM, f"module.compile={compile}",
                                       f"paths.data_dir={REPO / 'data'}"])
    return instantiate(cfg.module)


def test_compile_switch_keeps_parameters_and_checkpoint_keys(tiny_ae_ckpt):
    eager, compiled = _module(tiny_ae_ckpt, False), _module(tiny_ae_ckpt, True)
    assert compiled.model["backbone"]._compiled_call_impl is not None
    assert eager.model["backbone"]._compiled_call_impl is None
    assert compiled.ema.shadow["backbone"]._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(eager.state_dict())


@pytest.mark.slow
def test_compiled_unet_computes_the_eager_output(tiny_ae_ckpt):
    torch.manual_seed(0)
    module = _module(tiny_ae_ckpt, True)
    unet, twin = module.model["backbone"], module.ema.shadow["backbone"]
    for p in unet.parameters():
        p.data.normal_(0, 0.05)
    twin.load_state_dict(unet.state_dict())
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    cond = module.model["conditioner"]({"label": torch.tensor([1, 2])})
    expected = twin(x, t, cond)
    assert expected.std() > 1e-3
    torch.testing.assert_close(unet(x, t, cond), expected, rtol=1e-4, atol=1e-5)
