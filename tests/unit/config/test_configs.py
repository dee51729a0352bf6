"""Every config and every experiment preset composes, and its parts instantiate."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, compose_config

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
TASK_OF = {"fmnist_kl": "train_ae", "fmnist_vq": "train_ae"}


def task_of(experiment: str) -> str:
    return next((task for prefix, task in TASK_OF.items() if experiment.startswith(prefix)), "train_ldm")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment):
    cfg = compose_config(task_of(experiment), [f"experiment={experiment}", "logger=none"])
    assert cfg.trainer.max_epochs > 0
    datamodule = instantiate(cfg.data)
    assert datamodule.resolution > 0
    network = instantiate(cfg.autoencoder if task_of(experiment) == "train_ae" else cfg.backbone)
    assert sum(p.numel() for p in network.parameters()) > 0


def test_noisy_classifier_task_composes_and_instantiates():
    cfg = compose_config("train_noisy_classifier", ["logger=none"])
    network = instantiate(cfg.noisy_classifier)
    assert network.in_channels == cfg.first_stage_embed_dim and network.num_classes == 10
    assert cfg.module.schedule._target_ == cfg.diffusion.schedule._target_
    assert cfg.callbacks.model_checkpoint.monitor == cfg.optimized_metric == "val/acc"


@pytest.mark.parametrize("debug", ["fast_dev_run", "overfit"])
def test_debug_presets_compose(debug):
    cfg = compose_config("train_ae", [f"debug={debug}"])
    assert cfg.data.batch_size == 8


def test_vq_preset_selects_vector_quantizer():
    cfg = compose_config("train_ae", ["experiment=fmnist_vq_f4"])
    assert cfg.autoencoder.regularizer._target_.endswith("VectorQuantizer")
    assert cfg.loss.reg_weight == 1.0


def test_run_dirs_follow_the_layout():
    cfg = compose_config("train_ae", ["paths.log_dir=/tmp/L"])
    assert cfg.hydra.run.dir.startswith("/tmp/L/train_ae/runs/")
    assert cfg.hydra.sweep.dir.startswith("/tmp/L/train_ae/multiruns/")


GUIDANCE = sorted(p.stem for p in (Path(CONF_DIR) / "guidance").glob("*.yaml"))


@pytest.mark.parametrize("task", ["sample", "evaluate"])
@pytest.mark.parametrize("guidance", GUIDANCE)
def test_every_guidance_option_composes(task, guidance):
    cfg = compose_config(task, [f"guidance={guidance}"])
    assert cfg.guidance._target_.startswith("ldmlab.guidance.")
    if guidance in ("cfg", "interval", "none"):  # the others load a classifier or a target file when built
        built = instantiate(cfg.guidance)
        assert built.name == guidance and (guidance == "none") == (built.terms() == [])


def test_guidance_options_are_the_documented_ones():
    assert GUIDANCE == ["autoguidance", "cfg", "cfg_classifier", "classifier", "image", "interval", "none"]
    cfg = compose_config("sample", ["guidance=cfg_classifier"])
    assert set(cfg.guidance.terms) == {"cfg", "classifier"} and cfg.guidance.sweep == "classifier"
    assert compose_config("train_ldm", ["callbacks=ldm_sweep"]).callbacks.guidance_sweep.guidance.scale == 1.0


TOP_LEVEL = sorted(p.stem for p in Path(CONF_DIR).glob("*.yaml"))


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_every_top_level_config_composes(name):
    assert compose_config(name).task_name == name


def _leaves(node, prefix=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, (*prefix, str(key)))
    elif prefix and prefix[0] != "defaults":
        yield ".".join(prefix), repr(node)


def _blocks(node, path=()):
    """Every mapping of a YAML file with its leaves as (path below it, value) pairs."""
    if isinstance(node, dict):
        yield ".".join(path), frozenset(_leaves(node))
        for key, value in node.items():
            yield from _blocks(value, (*path, str(key)))


# Blocks that share ≥ 3 leaves by design or by the coincidence of small sizes, not one setting
# written twice: each command's own interface (ckpt, device, use_ema, seed), two networks of the
# same CPU size, stage 2's two modules (the LDM and the noisy classifier) and the two
# guidance-sweep searches' Hydra settings.
SHARED_BY_DESIGN = {
    ("autoencoder/f4.yaml:encoder", "conditioner/semantic.yaml:conditioner.embedders.z_sem"),
    ("backbone/small.yaml:", "noisy_classifier/small.yaml:"),
    ("evaluate.yaml:", "interpolate.yaml:"), ("evaluate.yaml:", "invert.yaml:"),
    ("evaluate.yaml:", "sample.yaml:"),
    ("experiment/cfg_sweep_fmnist.yaml:", "hparams_search/cfg_optuna.yaml:"),
    ("export.yaml:", "invert.yaml:"), ("export.yaml:", "sample.yaml:"), ("interpolate.yaml:", "invert.yaml:"),
    ("interpolate.yaml:", "sample.yaml:"), ("invert.yaml:", "sample.yaml:"),
    ("train_ae.yaml:", "train_noisy_classifier.yaml:"), ("train_ldm.yaml:", "train_noisy_classifier.yaml:"),
    ("train_ldm.yaml:module", "train_noisy_classifier.yaml:module"),
}


def test_no_block_is_written_twice():
    """Read as plain YAML, no two blocks that can meet in one composition (not two options of one
    group: those are alternatives) write the same ≥ 3 (key path, value) leaves; shared settings
    live in one file that the others pick (optimizer, sweep, train/base, autoencoder/f4,
    autoencoder/prior)."""
    conf = Path(CONF_DIR)
    blocks = [(f.relative_to(conf).as_posix(), path, leaves) for f in sorted(conf.rglob("*.yaml"))
              for path, leaves in _blocks(yaml.safe_load(f.read_text()) or {})]
    repeated = set()
    for (file_a, path_a, a), (file_b, path_b, b) in itertools.combinations(blocks, 2):
        same_group = file_a != file_b and "/" in file_a and Path(file_a).parent == Path(file_b).parent
        nested = file_a == file_b and (path_a.startswith(path_b) or path_b.startswith(path_a))
        if not same_group and not nested and len(a & b) >= 3:
            repeated.add((f"{file_a}:{path_a}", f"{file_b}:{path_b}"))
    assert repeated - SHARED_BY_DESIGN == set(), "write it once and pick it (a group, or defaults)"
    assert SHARED_BY_DESIGN - repeated == set(), "no longer shared: drop it from SHARED_BY_DESIGN"


def test_a_run_stored_with_the_parameterization_on_the_module_resumes():
    """Stage-2 runs stored before the module took its parameterization from the objective also
    stored ``module.parameterization``: a resume does not count it as a change."""
    from omegaconf import OmegaConf

    from ldmlab.config.resume_contract import ResumePoint, check_config

    composed = OmegaConf.to_container(compose_config("train_ldm", ["logger=none"]), resolve=False)
    composed.pop("hydra")
    composed["paths"]["output_dir"] = "/tmp/out"
    cfg = OmegaConf.create(composed)
    stored = OmegaConf.to_container(cfg, resolve=True)
    assert "parameterization" not in stored["module"]
    stored["module"]["parameterization"] = stored["diffusion"]["parameterization"]
    assert check_config(ResumePoint("old.ckpt", stored, {}, 1), cfg) == []


def test_groups_fill_the_same_keys_under_their_package_names():
    """Stage 1's loss (group autoencoder/loss) stays at ``loss``; an optimizer is picked per slot;
    evaluate and the in-run sweep read one sweep group; train/base gives every train config its seed."""
    ae = compose_config("train_ae", ["autoencoder/loss=lpips_disc", "optimizer@module.disc_optimizer=adamw"])
    assert ae.loss._target_ == "ldmlab.autoencoder.loss.AutoencoderLoss" and ae.loss.reconstruction == "l2"
    assert ae.module.disc_optimizer._target_ == "torch.optim.AdamW" and ae.module.disc_optimizer.lr == 4.0e-4
    assert ae.module.optimizer._target_ == "torch.optim.Adam"
    evaluate, ldm = compose_config("evaluate"), compose_config("train_ldm", ["callbacks=ldm_sweep"])
    shared = ("guidance_scales", "num_samples", "num_reference", "reference_split", "grid", "seeds",
              "batch_size", "select_by")
    assert all(evaluate[key] == ldm.callbacks.guidance_sweep[key] for key in shared)
    assert {compose_config(name).seed for name in ("train_ae", "train_ldm", "train_classifier",
                                                   "train_noisy_classifier")} == {42}


# Denoiser presets for image latents (backbone=mlp takes vector latents: its own experiments).
BACKBONES = sorted(p.stem for p in (Path(CONF_DIR) / "backbone").glob("*.yaml") if p.stem != "mlp")
CONDITIONERS = ["class", "class_vector", "text", "hybrid", "none"]
TRANSFORMER_SIZES = {"dit": (128, 6, 4), "dit_s": (384, 12, 6), "dit_b": (768, 12, 12),
                     "dit_l": (1024, 24, 16), "dit_xl": (1152, 28, 16), "uvit": (128, 7, 4)}


def _composed_backbone(backbone: str, conditioner: str):
    cfg = compose_config("train_ldm", [f"backbone={backbone}", f"conditioner={conditioner}", "logger=none"])
    return cfg, OmegaConf.to_container(cfg.backbone, resolve=True)


@pytest.mark.parametrize("conditioner", CONDITIONERS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_composes_with_every_conditioner(backbone, conditioner):
    """Compose only (the paper sizes are GPU-sized): the resolved sizes follow the conditioner;
    a class_vector table is as wide as a transformer's hidden_size (added as is), 128 for a UNet."""
    cfg, resolved = _composed_backbone(backbone, conditioner)
    assert resolved["context_dim"] == (128 if conditioner in ("class", "text", "hybrid") else None)
    assert resolved["concat_channels"] == (4 if conditioner == "hybrid" else 0)
    if backbone in TRANSFORMER_SIZES:
        sizes = (resolved["hidden_size"], resolved["depth"], resolved["num_heads"])
        assert sizes == TRANSFORMER_SIZES[backbone]
        assert resolved["input_size"] == 32 // 4 == cfg.data.resolution // cfg.first_stage_downsample_factor
    width = resolved.get("hidden_size", 128)
    assert resolved["vector_dim"] == (width if conditioner == "class_vector" else None)
    if conditioner == "class_vector":
        assert cfg.conditioner.embedders.label.embed_dim == width


def test_the_latent_side_follows_the_data_resolution_and_the_first_stage():
    _, resolved = _composed_backbone("dit", "none")
    cfg = compose_config("train_ldm", ["backbone=dit", "data.resolution=64",
                                       "first_stage_downsample_factor=8"])
    assert resolved["input_size"] == 8 and cfg.backbone.input_size == 64 // 8


def _random_weights(net: torch.nn.Module) -> None:
    """Small random weights everywhere, so that the zero-initialised outputs (adaLN-Zero, DiT's
    final layer, cross-attention outputs) let every input reach the output."""
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.05)


def _condition(conditioner: str, n: int) -> dict:
    """The batch entries the conditioner preset reads (labels, captions, the low-res image)."""
    return {"label": torch.arange(n) % 10, "caption": [f"a photo of item {i}" for i in range(n)],
            "lowres": torch.randn(n, 1, 8, 8)} if conditioner != "none" else {}


@pytest.mark.parametrize("conditioner", CONDITIONERS)
@pytest.mark.parametrize("backbone", ["dit", "uvit", "small"])
def test_cpu_backbones_instantiate_and_denoise_with_every_conditioner(backbone, conditioner):
    """Built from the composed config, the backbone takes the conditioner's output on latents of the
    composed shape (B, first_stage_embed_dim, s, s), s = resolution / f; the condition reaches it."""
    cfg, _ = _composed_backbone(backbone, conditioner)
    net, cond_net = instantiate(cfg.backbone), instantiate(cfg.conditioner).eval()
    cond_net.check_compatible(net)
    side, n = cfg.data.resolution // cfg.first_stage_downsample_factor, 3
    x, t = torch.randn(n, cfg.first_stage_embed_dim, side, side), torch.tensor([0, 500, 999])
    _random_weights(net)
    with torch.no_grad():
        out = net(x, t, cond_net(_condition(conditioner, n), batch_size=n))
        uncond = net(x, t, cond_net.unconditional(_condition(conditioner, n), batch_size=n))
    assert out.shape == x.shape and out.isfinite().all()
    assert (conditioner == "none") == torch.equal(out, uncond)
    if conditioner == "class_vector":
        table = cond_net.embedders.label.table
        assert table.weight.shape == (11, net.vector_dim) and net.vector_dim == 128
        if backbone == "dit":
            assert net.hidden_size == net.vector_dim and isinstance(net.vector_embed, torch.nn.Identity)
        elif backbone == "uvit":
            assert isinstance(net.vector_token, torch.nn.Identity)
        else:
            assert isinstance(net.vector_embed, torch.nn.Linear)  # the UNet projects the 128-wide label
