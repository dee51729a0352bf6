"""``${div:a,b}``: the latent side of a transformer backbone from the resolution and the factor."""

import pytest
from omegaconf import OmegaConf

import ldmlab  # noqa: F401  (registers the resolvers)


def test_div_gives_the_latent_side():
    cfg = OmegaConf.create({"res": 32, "f": 4, "side": "${div:${res},${f}}"})
    assert cfg.side == 8 and isinstance(cfg.side, int)


def test_div_refuses_a_factor_that_does_not_divide():
    cfg = OmegaConf.create({"side": "${div:30,4}"})
    with pytest.raises(Exception, match="4 does not divide 30"):
        _ = cfg.side
