"""An ldmlab KL autoencoder exported to diffusers' AutoencoderKL computes the same encode/decode."""

from __future__ import annotations

import pytest
import torch

from ldmlab.autoencoder.model import Autoencoder
from ldmlab.autoencoder.regularizers.kl import KLRegularizer
from ldmlab.autoencoder.regularizers.vq import VectorQuantizer
from ldmlab.interop.autoencoder_kl import to_diffusers_vae
from ldmlab.nn.decoder import Decoder
from ldmlab.nn.encoder import Encoder
from ldmlab.utils.errors import ConfigError

ARCH = {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 3}


def autoencoder(padding: str = "asymmetric", regularizer=None) -> Autoencoder:
    """A randomly initialised KL AE (f = 2, 3 latent channels, 2 image channels) with every
    parameter perturbed away from its init (norm weights ≠ 1, biases ≠ 0)."""
    torch.manual_seed(0)
    model = Autoencoder(Encoder(2, **ARCH, downsample_padding=padding), Decoder(2, **ARCH),
                        regularizer or KLRegularizer(3), embed_dim=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_exported_vae_matches_encode_and_decode():
    ours = autoencoder()
    vae = to_diffusers_vae(ours, scaling_factor=0.5)
    assert vae.config.scaling_factor == 0.5 and list(vae.config.block_out_channels) == [32, 64]
    x = torch.rand(2, 2, 16, 12) * 2 - 1
    with torch.no_grad():
        moments = ours.quant_conv(ours.encoder(x))
        posterior = vae.encode(x).latent_dist
        z = ours.encode(x)[0]
        assert z.abs().mean() > 0.1
        assert (posterior.mode() - z).abs().max() < 1e-4
        assert (posterior.logvar - moments[:, 3:].clamp(-30, 20)).abs().max() < 1e-4
        images = ours.decode(z)
        assert images.abs().mean() > 0.1
        assert (vae.decode(z).sample - images).abs().max() < 1e-4


def test_symmetric_padding_differs_and_is_refused():
    asymmetric, symmetric = autoencoder("asymmetric"), autoencoder("symmetric")
    x = torch.rand(1, 2, 16, 16) * 2 - 1
    with torch.no_grad():  # same weights, different sampling grid: the option is not cosmetic
        assert (asymmetric.encode(x)[0] - symmetric.encode(x)[0]).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="downsample_padding=asymmetric"):
        to_diffusers_vae(symmetric, scaling_factor=1.0)


def test_vq_autoencoder_is_refused():
    vq = autoencoder(regularizer=VectorQuantizer(3, codebook_size=8))
    with pytest.raises(ConfigError, match="autoencoder/regularizer=kl"):
        to_diffusers_vae(vq, scaling_factor=1.0)
