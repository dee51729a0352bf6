"""Image-guided synthesis: transforms, target/mask/box inputs and their errors, scale 0 exact,
the gradient's sign at one denoiser call, and the bite on a real (tiny) trained LDM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldmlab.data.fashion_mnist import FashionMNIST
from ldmlab.guidance.base import GuidanceContext
from ldmlab.guidance.image import (
    MASK_KEY,
    TARGET_KEY,
    ImageGuidance,
    box_mask,
    downsample,
    load_images,
)
from ldmlab.guidance.inputs import guided_condition
from ldmlab.models.restore import load_ldm, resolve_ldm_checkpoint
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.samplers.base import ScoreForm
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import ConfigError

BOX = "8,8,16,16"


def save_png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def save_npz(path: Path, images: torch.Tensor) -> str:
    """(N, C, H, W) floats in [-1, 1] → .npz ``images`` (N, H, W, C)."""
    np.savez(path, images=images.permute(0, 2, 3, 1).numpy())
    return str(path)


@pytest.fixture(scope="module")
def ldm(tiny_ldm_run):
    return load_ldm(resolve_ldm_checkpoint(str(tiny_ldm_run / "train_ldm" / "latest"), ""))


@pytest.fixture(scope="module")
def truth(fmnist_dir) -> torch.Tensor:
    """Four real Fashion-MNIST test images (4, 1, 32, 32) in [-1, 1]."""
    test_set = FashionMNIST(fmnist_dir, False, 32, 1, "pad")
    return torch.stack([test_set[i]["image"] for i in range(4)])


def context_of(module) -> GuidanceContext:
    return GuidanceContext(module.first_stage, module.schedule, (4, 8, 8), module.ema.shadow["conditioner"])


def test_downsample_is_an_antialiased_resize():
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    assert downsample(images, (8, 8)).shape == (2, 1, 8, 8)
    assert torch.allclose(downsample(torch.full((1, 1, 32, 32), 0.3), (8, 8)), torch.tensor(0.3))
    blocks = images.view(2, 1, 8, 4, 8, 4).mean(dim=(3, 5))  # the block mean is what antialiasing keeps
    assert (downsample(images, (8, 8)) - blocks).abs().mean() < (images[..., ::4, ::4] - blocks).abs().mean()


def test_box_is_the_unknown_region_and_parses_strings_and_lists():
    mask = box_mask("4,6,8,10", 32, 32)
    assert mask.shape == (1, 1, 32, 32) and (mask == 0).sum() == 80
    assert (mask[..., 4:12, 6:16] == 0).all() and mask[..., 3, 6] == 1 and mask[..., 4, 16] == 1
    assert torch.equal(box_mask([4, 6, 8, 10], 32, 32), mask)
    assert torch.equal(box_mask(" 4, 6,8 ,10", 32, 32), mask)


@pytest.mark.parametrize("box", ["1,2,3", "a,b,c,d", "0,0,32,32", "30,0,8,8", "0,0,0,4", "-1,0,4,4", 5,
                                 "1.5,0,4,4", [8, 8, 16]])
def test_bad_box_names_guidance_box(box):
    with pytest.raises(ConfigError, match=r"^guidance\.box: .*Fix: guidance\.box=\[8,8,16,16\]"):
        box_mask(box, 32, 32)


def test_targets_load_from_png_and_npz(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    assert torch.allclose(load_images(Path(save_png(tmp_path / "g.png", gray)), "k")[0, 0],
                          torch.from_numpy(gray).float() / 127.5 - 1)
    rgb = load_images(Path(save_png(tmp_path / "c.png", np.zeros((8, 8, 3), np.uint8))), "k")
    assert rgb.shape == (1, 3, 8, 8) and (rgb == -1).all()
    np.savez(tmp_path / "u.npz", images=np.full((3, 8, 8), 255, np.uint8))
    assert torch.equal(load_images(tmp_path / "u.npz", "k"), torch.ones(3, 1, 8, 8))
    floats = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(load_images(Path(save_npz(tmp_path / "f.npz", floats)), "k"), floats)


@pytest.mark.parametrize("case", ["missing", "suffix", "range", "no_images", "corrupt"])
def test_bad_target_files_name_the_key(case, tmp_path):
    path = tmp_path / {"suffix": "t.jpg", "corrupt": "t.png"}.get(case, "t.npz")
    if case == "suffix":
        path.write_bytes(b"x")
    elif case == "range":
        np.savez(path, images=np.full((1, 8, 8), 2.0, np.float32))
    elif case == "no_images":
        np.savez(path, pictures=np.zeros((1, 8, 8), np.uint8))
    elif case == "corrupt":
        path.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"^guidance\.target: "):
        ImageGuidance(str(path))


def test_mask_png_white_is_known_and_matches_the_equivalent_box(tmp_path):
    target = save_npz(tmp_path / "t.npz", torch.rand(2, 1, 32, 32) * 2 - 1)
    white = np.full((32, 32), 255, np.uint8)
    white[8:24, 8:24] = 0
    from_png = ImageGuidance(target, "mask", mask=save_png(tmp_path / "m.png", white))
    from_box = ImageGuidance(target, "mask", box=BOX)
    assert torch.equal(from_png.mask, from_box.mask) and from_box.mask.sum() == 32 * 32 - 16 * 16
    inputs = from_box.condition_inputs(5)
    assert inputs[MASK_KEY].shape == (5, 1, 32, 32) and inputs[TARGET_KEY].shape == (5, 1, 32, 32)
    assert (inputs[TARGET_KEY][..., 8:24, 8:24] == 0).all(), "the target's unknown pixels are ignored"
    images = torch.rand(5, 1, 32, 32)
    assert torch.equal(from_box.observe(images, inputs), images * from_box.mask)


def test_condition_inputs_cycle_the_targets_and_detach_unet_sets_model_grad(tmp_path):
    targets = torch.rand(3, 1, 8, 8) * 2 - 1
    guidance = ImageGuidance(save_npz(tmp_path / "t.npz", targets), detach_unet=True)
    assert torch.equal(guidance.condition_inputs(7)[TARGET_KEY], targets[[0, 1, 2, 0, 1, 2, 0]])
    assert MASK_KEY not in guidance.condition_inputs(7)
    assert not guidance.needs_model_grad and ImageGuidance(guidance.target_path).needs_model_grad
    assert guidance.with_scale(3).scale == 3.0 and guidance.scale == 1.0


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"transform": "blur"}, "guidance.transform"),
    ({"loss": "l1"}, "guidance.loss"),
    ({"target": None}, "guidance.target"),
    ({"scale": -1.0}, "guidance.scale"),
    ({"box": BOX}, "guidance.box"),
    ({"mask": "t.png"}, "guidance.mask"),
    ({"transform": "mask"}, "guidance.box"),
    ({"transform": "mask", "box": BOX, "mask": "m.png"}, "guidance.mask"),
    ({"transform": "mask", "mask": "small.png"}, "guidance.mask"),
    ({"transform": "mask", "mask": "black.png"}, "guidance.mask"),
    ({"target": "t8.png", "loss": "lpips"}, "guidance.loss"),
])
def test_bad_settings_name_their_key(kwargs, key, tmp_path):
    save_png(tmp_path / "t.png", np.zeros((32, 32), np.uint8))
    save_png(tmp_path / "t8.png", np.zeros((8, 8), np.uint8))
    save_png(tmp_path / "small.png", np.full((16, 16), 255, np.uint8))
    save_png(tmp_path / "black.png", np.zeros((32, 32), np.uint8))
    args = {"target": "t.png"} | kwargs
    args = {k: str(tmp_path / v) if isinstance(v, str) and v.endswith(".png") else v for k, v in args.items()}
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        ImageGuidance(**args)


def test_negative_scale_via_with_scale_names_guidance_scale(tmp_path):
    guidance = ImageGuidance(save_png(tmp_path / "t.png", np.zeros((8, 8), np.uint8)))
    with pytest.raises(ConfigError, match=r"^guidance\.scale: "):
        guidance.with_scale(-1)


@pytest.mark.parametrize(("shape", "transform", "fix"), [
    ((16, 16), "identity", "guidance.transform=downsample"),
    ((8, 8), "mask", "t_32x32.png"),
    ((7, 7), "downsample", "t_8x8.png"),
    ((64, 64), "downsample", "t_32x32.png"),
    ((32, 32, 3), "downsample", "t_32x32_L.png"),
])
def test_prepare_checks_the_target_against_the_model(ldm, shape, transform, fix, tmp_path):
    target = save_png(tmp_path / "t.png", np.zeros(shape, np.uint8))
    guidance = ImageGuidance(target, transform, box="2,2,4,4" if transform == "mask" else None)
    with pytest.raises(ConfigError, match=r"^guidance\.target: ") as error:
        guidance.prepare(context_of(ldm))
    assert fix in str(error.value).split("Fix: ")[1]


def test_scale_zero_is_the_unguided_sample_bit_exactly(ldm, truth, tmp_path):
    guidance = ImageGuidance(save_npz(tmp_path / "t.npz", truth), "mask", scale=0.0, box=BOX)
    conditioner, sampler = ldm.ema.shadow["conditioner"], DDIMSampler(steps=5)
    plain = ldm.generate(guided_condition(conditioner, None, 4), 4, sampler=sampler,
                         generator=torch.Generator().manual_seed(0))
    off = ldm.generate(guided_condition(conditioner, guidance, 4), 4, guidance=guidance, sampler=sampler,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, off)


def distance(guidance: ImageGuidance, images: torch.Tensor, condition: dict) -> torch.Tensor:
    """‖T(images) − y‖ per sample."""
    return (guidance.observe(images, condition) - condition[TARGET_KEY]).flatten(1).norm(dim=1)


@pytest.mark.parametrize("detach_unet", [False, True])
@pytest.mark.parametrize(("transform", "loss"), [("downsample", "l2"), ("mask", "l2"), ("mask", "lpips")])
def test_one_guided_denoiser_call_moves_x0_toward_the_target(ldm, truth, transform, loss, detach_unet,
                                                             tmp_path):
    images = downsample(truth, (8, 8)).clamp(-1, 1) if transform == "downsample" else truth
    scale = 10.0 if loss == "lpips" else 0.01
    guidance = ImageGuidance(save_npz(tmp_path / "t.npz", images), transform, loss, scale,
                             box=BOX if transform == "mask" else None, detach_unet=detach_unet)
    bound = guidance.prepare(context_of(ldm))
    (term,) = bound.gradients
    net, conditioner = ldm.ema.shadow["backbone"], ldm.ema.shadow["conditioner"]
    condition = guided_condition(conditioner, guidance, 4)
    cond = conditioner(condition, batch_size=4)
    x_t, t = torch.randn(4, 4, 8, 8), torch.full((4,), 300)
    denoiser = GuidedDenoiser(net, ldm.parameterization, ldm.schedule, cond, guidance=bound,
                              condition=condition, form=ScoreForm(ldm.schedule))
    with torch.no_grad():  # L = −log p / s: ‖T(D(ẑ0)) − y‖² for l2, LPIPS(T(D(ẑ0)), y) for lpips
        before = -term.log_prob(x_t, t, denoiser.predict(x_t, t)[0], condition)
        after = -term.log_prob(x_t, t, denoiser(x_t, t)[0], condition)
    assert (after < before).all(), (before, after)


@pytest.mark.parametrize("detach_unet", [False, True])
@pytest.mark.parametrize("transform", ["downsample", "mask"])
def test_guided_samples_match_the_target_better_than_unguided(ldm, truth, transform, detach_unet, tmp_path):
    images = downsample(truth, (8, 8)).clamp(-1, 1) if transform == "downsample" else truth
    scale = 10.0 if transform == "downsample" else 1.0
    guidance = ImageGuidance(save_npz(tmp_path / "t.npz", images), transform, scale=scale,
                             box=BOX if transform == "mask" else None, detach_unet=detach_unet)
    condition = guided_condition(ldm.ema.shadow["conditioner"], guidance, 4)
    sampler = DDIMSampler(steps=10)
    plain = ldm.generate(condition, 4, sampler=sampler, generator=torch.Generator().manual_seed(0))
    guided = ldm.generate(condition, 4, guidance=guidance, sampler=sampler,
                          generator=torch.Generator().manual_seed(0))
    before, after = distance(guidance, plain, condition), distance(guidance, guided, condition)
    assert after.mean() < 0.9 * before.mean(), (before, after)
