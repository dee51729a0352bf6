"""Every config and every experiment preset composes, and its parts instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

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
    network = instantiate(cfg.autoencoder if task_of(experiment) == "train_ae" else cfg.unet)
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
    if guidance in ("cfg", "none"):  # the others load a classifier or a target file when built
        built = instantiate(cfg.guidance)
        assert built.name == guidance and (guidance == "none") == (built.terms() == [])


def test_guidance_options_are_the_documented_ones():
    assert GUIDANCE == ["cfg", "cfg_classifier", "classifier", "image", "none"]
    cfg = compose_config("sample", ["guidance=cfg_classifier"])
    assert set(cfg.guidance.terms) == {"cfg", "classifier"} and cfg.guidance.sweep == "classifier"
    assert compose_config("train_ldm", ["callbacks=ldm_sweep"]).callbacks.guidance_sweep.guidance.scale == 1.0
