"""``python -m ldmlab.commands.sample guidance=image ...`` on a tiny trained LDM: super-resolution and
inpainting runs, and bad inputs — one ``error: guidance.<key>:`` line, exit 2, and a fix that,
applied (a ``python -c`` PIL one-liner first where it gives one), runs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from ldmlab.data.fashion_mnist import FashionMNIST
from ldmlab.guidance.image import downsample
from tests.conftest import compose_config, run_cli, run_forked

LOW, FULL, MASK = "guidance.target={low}", "guidance.target={full}", "guidance.transform=mask"
SAMPLE = ["ckpt={ldm}", "num_samples=2", "sampler.steps=3", "guidance=image"]
OVERRIDE = re.compile(r"(\+?[A-Za-z_][\w.]*)=(\[[^\]]*\]|[^\s;?)]+)")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_ldm_run, fmnist_dir) -> dict[str, str]:
    """The checkpoint and the images the commands hand in: a real test image at 32 and 8 px."""
    root = tmp_path_factory.mktemp("image_guidance_inputs")
    truth = FashionMNIST(fmnist_dir, False, 32, 1, "pad")[0]["image"][None]
    for name, image in (("full", truth), ("low", downsample(truth, (8, 8)).clamp(-1, 1))):
        pixels = ((image[0, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / f"{name}.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "rgb.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "mask16.png")
    ldm = (tiny_ldm_run / "train_ldm" / "latest" / "checkpoints" / "last.ckpt").resolve()
    return {"ldm": str(ldm), **{p.stem: str(p) for p in root.glob("*.png")}}


def test_super_resolution_runs_through_the_real_cli(inputs, tmp_path):
    args = [a.format(**inputs) for a in SAMPLE] + [f"guidance.target={inputs['low']}",
                                                   "guidance.transform=downsample", "guidance.scale=5"]
    out = run_cli("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "sample" / "latest").resolve()
    assert np.load(run / "samples.npz")["images"].shape == (2, 32, 32, 1)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["guidance"]["name"] == "image" and summary["guidance"]["transform"] == "downsample"


@pytest.mark.parametrize("box", ["guidance.box=[8,8,16,16]", "guidance.box='8,8,16,16'"])
@pytest.mark.parametrize("detach", ["false", "true"])
def test_inpainting_with_a_box_runs(inputs, box, detach, tmp_path):
    args = [a.format(**inputs) for a in (*SAMPLE, FULL, MASK)] + [box, f"guidance.detach_unet={detach}"]
    out = run_forked("ldmlab.commands.sample", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "sample" / "latest" / "summary.json").read_text())
    assert summary["guidance"]["box"] in ([8, 8, 16, 16], "8,8,16,16")


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    key: str
    run_fix: bool = True   # False: the fix names a file the user must supply (it only composes)


CASES = [
    Case("identity_target_too_small", (LOW, "guidance.transform=identity"), "guidance.target"),
    Case("mask_target_too_small", (LOW, MASK, "guidance.box=[2,2,4,4]"), "guidance.target"),
    Case("rgb_target_for_a_grayscale_model", ("guidance.target={rgb}",), "guidance.target"),
    Case("mask_size_differs_from_target", (FULL, MASK, "guidance.mask={mask16}"), "guidance.mask"),
    Case("box_outside_the_image", (FULL, MASK, "guidance.box=[0,0,40,40]"), "guidance.box"),
    Case("box_not_four_numbers", (FULL, MASK, "guidance.box='8,8,16'"), "guidance.box"),
    Case("mask_and_box", (FULL, MASK, "guidance.box=[8,8,16,16]", "guidance.mask={full}"), "guidance.mask"),
    Case("box_without_mask_transform", (LOW, "guidance.box=[8,8,16,16]"), "guidance.box"),
    Case("negative_scale", (LOW, "guidance.scale=-1"), "guidance.scale"),
    Case("unknown_transform", (LOW, "guidance.transform=blur"), "guidance.transform"),
    Case("lpips_on_an_8px_target", (LOW, "guidance.loss=lpips"), "guidance.loss"),
    Case("no_target", (), "guidance.target", run_fix=False),
    Case("missing_target_file", ("guidance.target=/nonexistent/low.png",), "guidance.target", run_fix=False),
]


def apply_fix(line: str, args: list[str]) -> list[str]:
    """Run the fix's ``python -c`` command if it has one, then put its overrides (before any
    parenthesised alternative) in place of ``args``' overrides of the keys it sets."""
    fix = line.split(" Fix: ", 1)[1].split(" (", 1)[0]
    if fix.startswith("python -c "):
        command, fix = fix.split(" then ", 1)
        subprocess.run([sys.executable, *shlex.split(command)[1:]], check=True)
    overrides = [f"{k}={v}" for k, v in OVERRIDE.findall(fix)]
    assert overrides, line
    keys = {o.split("=", 1)[0] for o in overrides}
    return [a for a in args if a.split("=", 1)[0] not in keys] + overrides


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_naming_the_key_with_a_fix_that_runs(case: Case, inputs, tmp_path):
    args = [a.format(**inputs) for a in (*SAMPLE, *case.args)]
    out = run_forked("ldmlab.commands.sample", args, tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {case.key}:"), out.stderr[-3000:]
    print(f"{case.name} | {lines[0]}")
    fixed = apply_fix(lines[0], args)
    compose_config("sample", fixed)
    if case.run_fix:
        again = run_forked("ldmlab.commands.sample", fixed, tmp_path / "fixed")
        assert again.returncode == 0, f"{lines[0]}: {again.stderr[-3000:]}"
