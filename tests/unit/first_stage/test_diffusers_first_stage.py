"""``first_stage=diffusers``: a saved diffusers AutoencoderKL as the frozen first stage, by config."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ldmlab.first_stage.diffusers import DiffusersFirstStage
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config

TINY_VAE = {"in_channels": 1, "out_channels": 1, "block_out_channels": (32, 64), "layers_per_block": 1,
            "latent_channels": 4, "norm_num_groups": 32, "down_block_types": ("DownEncoderBlock2D",) * 2,
            "up_block_types": ("UpDecoderBlock2D",) * 2, "scaling_factor": 0.7}


def save_tiny_vae(path, **config) -> AutoencoderKL:
    """A randomly initialised tiny AutoencoderKL (f = 2, 4 latent channels, 1 image channel),
    every parameter perturbed away from its init, saved to ``path``."""
    torch.manual_seed(0)
    vae = AutoencoderKL(**(TINY_VAE | config))
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    vae.save_pretrained(path)
    return vae.eval()


def first_stage(path, *overrides: str) -> DiffusersFirstStage:
    """The first stage as ``first_stage=diffusers first_stage.path=<path>`` builds it; its
    ``ConfigError`` unwrapped from Hydra's exception (as the CLI reports it)."""
    cfg = compose_config("train_ldm", ["first_stage=diffusers", f"first_stage.path={path}", "data.channels=1",
                                       "first_stage_downsample_factor=2", *overrides])
    try:
        return instantiate(cfg.first_stage)
    except InstantiationException as err:
        raise err.__cause__ from None


@pytest.mark.parametrize("shift", [None, 0.1])
def test_encode_and_decode_equal_diffusers(tmp_path, shift):
    save_tiny_vae(tmp_path, shift_factor=shift)
    reference = AutoencoderKL.from_pretrained(tmp_path, local_files_only=True).eval()
    stage = first_stage(tmp_path)
    assert bool(stage.scale_initialized) and float(stage.scale_factor) == pytest.approx(0.7)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = (reference.encode(x).latent_dist.mode() - (shift or 0.0)) * 0.7
        z = stage.encode(x)
        assert z.shape == (2, 4, 8, 8) and expected.abs().mean() > 0.1
        assert (z - expected).abs().max() < 1e-5
        images = reference.decode(z / 0.7 + (shift or 0.0)).sample.clamp(-1, 1)
        assert images.abs().mean() > 0.1
        assert (stage.decode(z) - images).abs().max() < 1e-5


def test_rebuilds_from_its_stored_config_without_the_directory(tmp_path):
    save_tiny_vae(tmp_path)
    stage = first_stage(tmp_path)
    stored = json.loads(json.dumps(stage.autoencoder_config))  # plain data
    rebuilt = DiffusersFirstStage(None, 4, 2, 1, autoencoder_config=stored)
    rebuilt.load_state_dict(stage.state_dict())
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    assert torch.equal(rebuilt.encode(x), stage.encode(x)) and rebuilt.fingerprint() == stage.fingerprint()


def test_scale_by_std_fits_unit_latents(tmp_path):
    save_tiny_vae(tmp_path)
    stage = first_stage(tmp_path, "first_stage.scale_by_std=true")
    assert not bool(stage.scale_initialized)
    batches = [{"image": torch.rand(4, 1, 16, 16) * 2 - 1} for _ in range(2)]
    stage.fit_scale_from(batches, 2, torch.device("cpu"))
    z = stage.encode(torch.cat([b["image"] for b in batches]))
    assert bool(stage.scale_initialized) and z.std().item() == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize(("override", "fix"), [
    ("data.channels=3", "data.channels=1"),
    ("first_stage_embed_dim=8", "first_stage_embed_dim=4"),
    ("first_stage_downsample_factor=8", "first_stage_downsample_factor=2"),
])
def test_mismatch_names_the_key_and_its_value(tmp_path, override, fix):
    save_tiny_vae(tmp_path)
    with pytest.raises(ConfigError, match=f"Fix: {fix}"):
        first_stage(tmp_path, override)


def test_not_an_autoencoder_kl_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ConfigError, match="^first_stage.path: .* UNet2DModel model, not an AutoencoderKL"):
        first_stage(tmp_path)
    pipeline = tmp_path / "pipeline"
    save_tiny_vae(pipeline / "vae")
    with pytest.raises(ConfigError, match=f"Fix: first_stage.path={pipeline / 'vae'}$"):
        first_stage(pipeline)
    with pytest.raises(ConfigError, match="is not a directory"):
        first_stage(tmp_path / "missing")
