"""Checkpoints written before the denoiser slot was renamed ``unet`` → ``backbone``: their state
names and configs read as today's, and a resume of such a run compares against today's config."""

from __future__ import annotations

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from ldmlab.config.renamed import rename_state, renamed_slot
from ldmlab.config.resume_contract import ResumePoint, check_config
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config


@pytest.fixture(autouse=True)
def _no_hydra_config_left():
    yield
    HydraConfig.instance().cfg = None


def test_state_names_under_the_slot_are_renamed_at_the_module_prefix_only():
    state = {"model.unet.out.weight": 1, "ema.shadow.unet.out.weight": 2, "ema.num_updates": 3,
             "model.conditioner.unet.x": 4, "first_stage.semantic.ema.shadow.unet.w": 5}
    rename_state(state)
    assert state == {"model.backbone.out.weight": 1, "ema.shadow.backbone.out.weight": 2,
                     "ema.num_updates": 3, "model.conditioner.unet.x": 4,
                     "first_stage.semantic.ema.shadow.unet.w": 5}
    rename_state(state, "first_stage.semantic.")  # a stage-2 model nested in a latent-DDIM first stage
    assert state["first_stage.semantic.ema.shadow.backbone.w"] == 5 and len(state) == 5


def test_the_slot_key_is_renamed_in_place_and_a_current_config_is_kept():
    old = {"first_stage": 1, "unet": {"model_channels": 8}, "conditioner": 2}
    assert list(renamed_slot(old).items()) == [("first_stage", 1), ("backbone", {"model_channels": 8}),
                                                ("conditioner", 2)]
    current = {"backbone": {"model_channels": 8}}
    assert renamed_slot(current) is current


def ldm_task(overrides: list[str]):
    cfg = compose_config("train_ldm", overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def pre_rename(config: dict) -> dict:
    """``config`` as a run started before the rename stored it."""
    renamed = {("unet" if k == "backbone" else k): v for k, v in config.items()}
    renamed["module"] = {("unet" if k == "backbone" else k): v for k, v in config["module"].items()}
    return renamed


def test_a_pre_rename_run_resumes_and_its_changes_are_named_by_todays_keys():
    stored = pre_rename(OmegaConf.to_container(ldm_task([]), resolve=True))
    checkpoint = {"ldmlab_config": stored, "state_dict": {"model.unet.out.weight": torch.zeros(4, 2),
                                                          "ema.shadow.unet.out.weight": torch.zeros(4, 2)}}
    point = ResumePoint.of("run/checkpoints/last.ckpt", checkpoint, "ldmlab_config", "world_size")
    assert point.shapes == {"model.backbone.out.weight": (4, 2), "ema.shadow.backbone.out.weight": (4, 2)}
    assert check_config(point, ldm_task(["trainer.max_epochs=9"])) == []
    with pytest.raises(ConfigError) as caught:
        check_config(point, ldm_task(["backbone.num_heads=2"]))
    assert caught.value.problem.endswith("backbone.num_heads 4 → 2")
    assert "backbone.num_heads=4" in caught.value.fix
