"""Checkpoints written before the package reshape (tests/fixtures/pre_move, commit ea533ee) load
through ``target_aliases`` and draw the samples, reconstructions and logits they drew then.

The fixtures were computed on another CPU: float kernels differ in the last bits between CPU
models (up to 5e-6 here, AMD EPYC, against the fixtures' machine; 0 on the same machine), so
outputs are compared to ``ATOL``. A weight loaded into the wrong place moves them by far more.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ldmlab.autoencoder.loading import load_autoencoder
from ldmlab.checkpoints import CONFIG_KEY, read_checkpoint
from ldmlab.classifier.noisy_loading import load_noisy_classifier
from ldmlab.conditioning.condition_builder import chunk_of
from ldmlab.guidance.inputs import guided_condition
from ldmlab.models.restore import build_sampler, load_ldm
from ldmlab.target_aliases import MOVED_MODULES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pre_move"
DDIM = {"_target_": "ldmlab.sampling.samplers.ddim.DDIMSampler", "steps": 5, "spacing": "trailing",
        "eta": 0.0}
DPMPP = {"_target_": "ldmlab.sampling.samplers.dpmpp_2m.DPMPP2MSampler", "steps": 5, "spacing": "trailing"}
CFG2 = {"_target_": "ldmlab.guidance.cfg.ClassifierFreeGuidance", "scale": 2.0, "rescale": 0.0}
NO_GUIDANCE = {"_target_": "ldmlab.guidance.none.NoGuidance"}
ATOL = 1e-4


def same(got: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def old(tmp_path_factory) -> Path:
    """Copies of the fixtures (without the AE the LDM was trained on: stage 2 must not need it)."""
    folder = tmp_path_factory.mktemp("pre_move")
    for name in ("ldm", "ldm_semantic", "noisy_classifier"):
        shutil.copyfile(FIXTURES / f"{name}.ckpt", folder / f"{name}.ckpt")
    return folder


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / "expected_samples.pt", weights_only=True)


def draw(ckpt: Path, sampler: dict, guidance: dict) -> torch.Tensor:
    """What ``make sample`` draws on the CPU: 4 samples, seed 0, EMA weights (as the fixtures were made)."""
    device = torch.device("cpu")
    guide = instantiate(guidance)
    module = load_ldm(ckpt).to(device)
    condition = guided_condition(module.ema.shadow["conditioner"], guide, 4)
    generator = torch.Generator(device=device).manual_seed(0)
    return module.generate(chunk_of(condition, 0, 4, device), 4, guidance=guide,
                           sampler=build_sampler(sampler, module), generator=generator, use_ema=True)


def test_old_targets_are_read_as_the_moved_classes(old) -> None:
    stored = read_checkpoint(old / "ldm.ckpt", "ckpt", "fix")[CONFIG_KEY]
    raw = torch.load(old / "ldm.ckpt", weights_only=True)[CONFIG_KEY]
    assert raw["module"]["first_stage"]["_target_"] == "ldmlab.diffusion.first_stage.FirstStage"
    assert stored["module"]["first_stage"]["_target_"] == "ldmlab.first_stage.autoencoder.FirstStage"
    assert stored["module"]["sampler"]["_target_"] == "ldmlab.sampling.samplers.ddim.DDIMSampler"
    assert all(not new.startswith(tuple(f"{o}." for o in MOVED_MODULES)) for new in MOVED_MODULES.values())


@pytest.mark.parametrize(("key", "ckpt", "sampler", "guidance"), [
    ("ldm_ddim_cfg2", "ldm", DDIM, CFG2),
    ("ldm_dpmpp_cfg2", "ldm", DPMPP, CFG2),
    ("ldm_ddim_classifier2", "ldm", DDIM, "classifier"),
    ("ldm_semantic_ddim", "ldm_semantic", DDIM, NO_GUIDANCE),
])
def test_old_checkpoints_sample_as_they_did(old, expected, key, ckpt, sampler, guidance) -> None:
    if guidance == "classifier":
        guidance = {"_target_": "ldmlab.guidance.classifier.ClassifierGuidance", "scale": 2.0,
                    "classifier_ckpt": str(old / "noisy_classifier.ckpt"), "log_dir": str(old)}
    same(draw(old / f"{ckpt}.ckpt", sampler, guidance).cpu(), expected[key])


def test_old_autoencoder_and_classifier_compute_identically(expected) -> None:
    autoencoder = load_autoencoder(FIXTURES / "ae.ckpt")[0].eval()
    classifier = load_noisy_classifier(FIXTURES / "noisy_classifier.ckpt").network
    with torch.no_grad():
        same(autoencoder(expected["ae_input"])[0], expected["ae_reconstruction"])
        logits = classifier(expected["noisy_classifier_latents"], expected["noisy_classifier_t"])
    same(logits, expected["noisy_classifier_logits"])
