"""Pixel space, DiffuseVAE and ES-DDPM as configurations of the same engine, end to end on real
data and a real (tiny) stage-1 checkpoint used both as first stage and as the VAE generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ldmlab.autoencoder.prior import VAEPrior
from ldmlab.autoencoder.regularizers.kl import KLRegularizer
from ldmlab.autoencoder.regularizers.vq import VectorQuantizer
from ldmlab.checkpoints import CONFIG_KEY
from ldmlab.conditioning.condition_builder import build_condition
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.conditioning.generator_embedder import GeneratorSampleEmbedder
from ldmlab.first_stage.identity import IdentityFirstStage
from ldmlab.models.restore import load_ldm
from ldmlab.utils.errors import ConfigError
from tests.conftest import TINY_AE, run_forked

FAST = ["data.train_subset=32", "data.val_subset=16", "data.batch_size=16", "backbone.model_channels=16",
        "backbone.num_heads=2", "trainer.max_epochs=1", "module.warmup_steps=0", "module.scale_fit_batches=1",
        "callbacks.image_logger=null", "logger=none", "sampler.steps=5"]


def train(args: list[str], log_dir) -> dict:
    out = run_forked("ldmlab.commands.train", [*FAST, *args], log_dir, "train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((log_dir / "train_ldm" / "latest" / "summary.json").read_text())


def sample(log_dir, *args: str) -> np.ndarray:
    out = run_forked("ldmlab.commands.sample", [f"ckpt={log_dir / 'train_ldm' / 'latest'}", "num_samples=4",
                                       "sampler.steps=5", *args], log_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    return np.load((log_dir / "sample" / "latest" / "samples.npz").resolve())["images"]


def test_identity_first_stage_round_trips_and_clamps():
    stage = IdentityFirstStage(channels=1)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert torch.equal(stage.decode(stage.encode(x)), x) and stage.encode(x) is not x
    assert float(stage.decode(3 * x).abs().max()) <= 1.0
    assert torch.equal(stage.decode_differentiable(3 * x), 3 * x)
    assert (stage.embed_dim, stage.downsample_factor, float(stage.scale_factor)) == (1, 1, 1.0)


def test_pixel_space_model_trains_restores_and_samples(tmp_path):
    summary = train(["experiment=ldm_pixel"], tmp_path)
    assert summary["first_stage_ckpt"] is None and summary["scale_factor"] == 1.0
    assert np.isfinite(summary["metrics"]["val/loss"])
    module = load_ldm(tmp_path / "train_ldm" / "latest" / "checkpoints" / "last.ckpt")
    assert isinstance(module.first_stage, IdentityFirstStage) and module.horizon == 1000
    images = sample(tmp_path, "class_label=3")
    assert images.shape == (4, 32, 32, 1) and images.dtype == np.uint8


def test_regularizer_prior_hook():
    kl = KLRegularizer(embed_dim=4)
    z = kl.sample_prior((2000, 4, 2, 2), torch.Generator().manual_seed(0))
    assert z.shape == (2000, 4, 2, 2) and abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    assert VectorQuantizer(embed_dim=4, codebook_size=8).sample_prior((2, 4, 2, 2)) is None


def test_vae_prior_samples_and_reconstructs(tiny_ae_ckpt, fmnist_dir):
    prior = VAEPrior(str(tiny_ae_ckpt), resolution=32, channels=1)
    a = prior.sample(5, torch.Generator().manual_seed(1))
    b = prior.sample(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, 1, 32, 32) and torch.equal(a, b) and float(a.abs().max()) <= 1
    assert not torch.equal(a, prior.sample(5, torch.Generator().manual_seed(2)))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert prior.reconstruct(x).shape == x.shape
    prior.train()
    assert not prior.autoencoder.training  # frozen: always the posterior mode


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"ckpt": "/nonexistent/vae.ckpt"}, "generator_ckpt"),
    ({"channels": 3}, "generator_ckpt"),
    ({"resolution": 30}, "data.resolution"),
])
def test_vae_prior_bad_inputs_name_the_key(tiny_ae_ckpt, kwargs, key):
    with pytest.raises(ConfigError) as bad:
        VAEPrior(**({"ckpt": str(tiny_ae_ckpt), "resolution": 32, "channels": 1} | kwargs))
    assert bad.value.key == key


def test_diffusevae_conditioner_shapes_null_and_inputs(tiny_ae_ckpt):
    embedder = GeneratorSampleEmbedder(VAEPrior(str(tiny_ae_ckpt), 32, 1), size=8)
    conditioner = Conditioner({"x_hat": embedder}, p_uncond=1.0)
    image = torch.rand(3, 1, 32, 32) * 2 - 1
    recon = embedder.inputs({"image": image})
    torch.testing.assert_close(recon, embedder.prior.reconstruct(image))
    assert embedder.inputs({"label": torch.zeros(3)}) is None
    assert torch.equal(embedder.inputs({"x_hat": image, "image": -image}), image)
    assert embedder(image).shape == embedder.null(3).shape == (3, 1, 8, 8)
    conditioner.eval()
    out = conditioner({"x_hat": image})["concat"]
    assert out.shape == (3, 1, 8, 8) and not torch.equal(out, embedder.null(3))
    conditioner.train()  # p_uncond = 1: every sample gets the learned null
    assert torch.equal(conditioner({"image": image})["concat"], embedder.null(3))
    condition = build_condition(conditioner, 6)
    assert condition["x_hat"].shape == (6, 1, 32, 32)
    torch.testing.assert_close(condition["x_hat"], embedder.prior.sample(6, torch.Generator().manual_seed(0)))


def test_diffusevae_trains_and_refines_the_vae_samples(tiny_ae_ckpt, tmp_path):
    summary = train(["experiment=diffusevae", f"generator_ckpt={tiny_ae_ckpt}",
                     f"first_stage.ckpt={tiny_ae_ckpt}"], tmp_path)
    assert np.isfinite(summary["metrics"]["val/loss"])
    module = load_ldm(tmp_path / "train_ldm" / "latest" / "checkpoints" / "last.ckpt")
    assert module.model["backbone"].concat_channels == 1
    assert sample(tmp_path).shape == (4, 32, 32, 1)


def test_centred_diffusevae_trains_in_pixel_space_and_samples(tiny_ae_ckpt, tmp_path):
    summary = train(["experiment=diffusevae_centred", f"generator_ckpt={tiny_ae_ckpt}"], tmp_path)
    assert np.isfinite(summary["metrics"]["val/loss"])
    module = load_ldm(tmp_path / "train_ldm" / "latest" / "checkpoints" / "last.ckpt")
    assert module.model["conditioner"].embedders["x_hat"].centre_forward_process
    assert sample(tmp_path).shape == (4, 32, 32, 1)


def test_es_ddpm_trains_below_t_prime_and_starts_from_the_vae(tiny_ae_ckpt, tmp_path):
    summary = train(["experiment=es_ddpm", f"generator_ckpt={tiny_ae_ckpt}",
                     f"first_stage.ckpt={tiny_ae_ckpt}", "diffusion.timestep_sampler.t_max=300"], tmp_path)
    assert np.isfinite(summary["metrics"]["val/loss"])
    module = load_ldm(tmp_path / "train_ldm" / "latest" / "checkpoints" / "last.ckpt")
    assert module.horizon == 300 and module.start is not None
    seen = []  # the timesteps the (EMA) network is asked about while sampling
    module.ema.shadow["backbone"].register_forward_hook(lambda m, args, out: seen.append(args[1]))
    images = module.generate({}, 3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 32, 32) and int(torch.cat(seen).max()) == 299
    assert sample(tmp_path).shape == (4, 32, 32, 1)
    refused = run_forked("ldmlab.commands.sample",
                         [f"ckpt={tmp_path / 'train_ldm' / 'latest'}", "sampler.steps=500"], tmp_path)
    assert refused.returncode == 2 and "T'=300" in refused.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("f", [2, 8])
def test_f_sweep_presets_train_on_their_autoencoder(f, tmp_path):
    """experiment=ldm_f2 / ldm_f8 on a tiny autoencoder=f2 / f8 (the f-sweep's other points)."""
    ae_args = [*TINY_AE, f"autoencoder=f{f}", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
               "trainer.limit_val_batches=1"]
    ae = run_forked("ldmlab.commands.train", ae_args, tmp_path)
    assert ae.returncode == 0, ae.stderr[-3000:]
    ckpt = next(tmp_path.glob("train_ae/runs/*/checkpoints/last.ckpt"))
    summary = train([f"experiment=ldm_f{f}", f"first_stage.ckpt={ckpt}"], tmp_path)
    assert np.isfinite(summary["metrics"]["val/loss"])
    assert sample(tmp_path, "class_label=1").shape == (4, 32, 32, 1)


def test_a_checkpoint_from_before_the_objective_restores_to_the_same_loss(tiny_ldm_run, tmp_path):
    """Stage-2 checkpoints written before ``diffusion.objective`` stored ``loss``,
    ``loss_weighting`` and ``parameterization`` on the module; they restore into the equivalent
    uniform-t objective."""
    path = tiny_ldm_run / "train_ldm" / "latest" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    module_config = checkpoint[CONFIG_KEY]["module"]
    objective = module_config.pop("objective")
    assert objective["timestep_sampler"]["_target_"].endswith("UniformTimesteps")
    module_config |= {"loss": objective["loss"], "loss_weighting": objective["loss_weighting"],
                      "parameterization": objective["parameterization"]}  # then on the module only
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    batch = {"image": torch.rand(4, 1, 32, 32) * 2 - 1, "label": torch.arange(4)}
    losses = []
    for file in (path, old):
        module = load_ldm(file)
        torch.manual_seed(0)
        losses.append(module.diffusion_loss(batch, module.ema.shadow))
    assert torch.equal(*losses) and float(losses[0]) > 0


def test_vae_preset_trains_a_generator_with_a_prior(tmp_path):
    """`make train-ae ARGS="experiment=fmnist_kl_vae"` writes logs/train_vae, which the hybrids'
    default generator_ckpt reads; its prior samples decode to images."""
    args = [*TINY_AE, "experiment=fmnist_kl_vae", "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1"]
    out = run_forked("ldmlab.commands.train", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = tmp_path / "train_vae" / "latest" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)[CONFIG_KEY]["loss"]["reg_weight"] == 1.0
    prior = VAEPrior(str(ckpt), 32, 1)
    assert prior.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 32, 32)
