"""Image-guided synthesis (the LDM paper's post-hoc guiding) with an unconditional Fashion-MNIST
LDM: super-resolution (y = bicubic 8×8 of a test image) and inpainting (a box of unknown pixels).

  python experiments/guidance-fashion-mnist/image_guidance.py --ckpt RUN_DIR_OR_CKPT sweep
  python experiments/guidance-fashion-mnist/image_guidance.py --ckpt RUN_DIR_OR_CKPT run \
      --sr-scale S S_DETACHED --inpaint-scale S S_DETACHED

``sweep``: guidance scales on the 16 test images 9000–9015 (disjoint from the evaluated ones),
both detach_unet settings → ``image_guidance_sweep.csv`` / ``.md`` (an empty ``--sr-scales`` or
``--inpaint-scales`` skips that task; ``--loss lpips`` needs it for the 8×8 targets).
``run``: the first N test images →
``image_guidance.csv`` / ``.md`` (mean ± standard error over the images) and PNG strips
``image_guidance_<task>.png`` (rows: input, [bicubic,] unguided, guided with detach_unet false,
true, ground truth; 8 images).

Everything goes through the framework: ``load_ldm``, ``ImageGuidance`` (guidance=image) and
``LatentDiffusionModule.generate`` with a DDIM sampler; unguided and guided samples of an image
share the initial noise (batch b's generator is seeded with seed + b). Metrics, images in [0, 1]:
- PSNR to the ground truth: the full image (super-resolution); inpainting: the unknown box
  (``psnr_unknown``) and the known pixels (``psnr_known``: how well the sample honours them);
- LPIPS-VGG16 to the ground truth on 32×32 images; for inpainting the box is too small for VGG
  (12×12 < 16), so LPIPS is taken on the composite (the sample inside the box, the ground truth
  outside): it sees only the unknown region, in its true surroundings;
- sampling seconds per image (wall clock of ``generate``) and its ratio to the unguided run.
The low-resolution target is the antialiased bicubic 8×8 of the ground truth clamped to [-1, 1]
(float, not re-quantised); the ``bicubic`` row upsamples it back with plain bicubic.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import save_image

from ldmlab.commands.evaluate import stored_datamodule
from ldmlab.conditioning.condition_builder import chunk_of
from ldmlab.evaluation.table import format_value, write_csv
from ldmlab.guidance.image import ImageGuidance, box_mask, downsample
from ldmlab.guidance.inputs import guided_condition
from ldmlab.models.restore import load_ldm, resolve_ldm_checkpoint
from ldmlab.nn.lpips import LPIPS
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.images import to_unit

HERE = Path(__file__).resolve().parent
SWEEP_START, SWEEP_COUNT = 9000, 16
LOW_RES = (8, 8)
TASKS = {"super_resolution": ("psnr", "lpips"), "inpainting": ("psnr_unknown", "lpips_unknown", "psnr_known")}


def psnr(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [-1, 1] (taken in [0, 1]) over the pixels where weight = 1."""
    weight = weight.expand_as(x)
    mse = ((to_unit(x) - to_unit(y)).square() * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def summarise(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error."""
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


class Experiment:
    """The model, the test images and the measurements shared by ``sweep`` and ``run``."""

    def __init__(self, ckpt: str, steps: int, batch_size: int, seed: int, box: str, loss: str) -> None:
        path = resolve_ldm_checkpoint(ckpt, "logs")
        self.module = load_ldm(path)
        self.conditioner = self.module.ema.shadow["conditioner"]
        datamodule = stored_datamodule(path)
        datamodule.setup("fit")
        self.test_set = datamodule.test_set
        self.sampler = DDIMSampler(steps=steps)
        self.batch_size, self.seed, self.box, self.loss = batch_size, seed, box, loss
        self.lpips = LPIPS()
        self.tmp = Path(tempfile.mkdtemp(prefix="image_guidance_"))

    def truth(self, start: int, count: int) -> torch.Tensor:
        return torch.stack([self.test_set[i]["image"] for i in range(start, start + count)])

    def guidance(self, task: str, truth: torch.Tensor, scale: float, detach_unet: bool) -> ImageGuidance:
        """guidance=image for ``truth``: its low-res version (downsample) or itself with the box."""
        path = self.tmp / f"{task}.npz"
        target = downsample(truth, LOW_RES).clamp(-1, 1) if task == "super_resolution" else truth
        np.savez(path, images=target.permute(0, 2, 3, 1).numpy())
        if task == "super_resolution":
            return ImageGuidance(str(path), "downsample", self.loss, scale, detach_unet=detach_unet)
        return ImageGuidance(str(path), "mask", self.loss, scale, box=self.box, detach_unet=detach_unet)

    def sample(self, guidance: ImageGuidance | None, count: int) -> tuple[torch.Tensor, float]:
        """(count, C, H, W) samples and seconds per image."""
        condition = guided_condition(self.conditioner, guidance, count)
        images, seconds = [], 0.0
        for batch, start in enumerate(range(0, count, self.batch_size)):
            stop = min(start + self.batch_size, count)
            generator = torch.Generator().manual_seed(self.seed + batch)
            begin = time.perf_counter()
            images.append(self.module.generate(chunk_of(condition, start, stop, "cpu"), stop - start,
                                               guidance=guidance, sampler=self.sampler, generator=generator))
            seconds += time.perf_counter() - begin
        return torch.cat(images), seconds / count

    @torch.no_grad()
    def metrics(self, task: str, images: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image metrics (N,) by name (see the module docstring)."""
        if task == "super_resolution":
            return {"psnr": psnr(images, truth, torch.ones(1)), "lpips": self.lpips_of(images, truth)}
        known = box_mask(self.box, *truth.shape[-2:])
        composite = known * truth + (1 - known) * images
        return {"psnr_unknown": psnr(images, truth, 1 - known),
                "lpips_unknown": self.lpips_of(composite, truth), "psnr_known": psnr(images, truth, known)}

    def lpips_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.lpips(a, b) for a, b in zip(x.split(50), y.split(50), strict=True)])

    def compare(self, task: str, truth: torch.Tensor, settings: list[tuple[float, bool]]):
        """Table rows and display panels: [bicubic,] unguided, then guided at each (scale, detach_unet)."""
        rows, panels = [], []

        def add(method, images, scale=None, detach=None, seconds=None, ratio=None):
            row = {"task": task, "method": method, "scale": scale, "detach_unet": detach}
            for name, values in self.metrics(task, images, truth).items():
                row[name], row[f"{name}_se"] = summarise(values)
            rows.append({k: v for k, v in (row | {"seconds_per_image": seconds, "cost_ratio": ratio}).items()
                         if v is not None})
            panels.append(images)
            print(rows[-1], flush=True)

        if task == "super_resolution":
            low_res = downsample(truth, LOW_RES).clamp(-1, 1)
            add("bicubic", F.interpolate(low_res, size=truth.shape[-2:], mode="bicubic").clamp(-1, 1))
        plain, plain_seconds = self.sample(None, len(truth))
        add("unguided", plain, seconds=plain_seconds, ratio=1.0)
        for scale, detach in settings:
            images, seconds = self.sample(self.guidance(task, truth, scale, detach), len(truth))
            add("guided", images, scale, detach, seconds, seconds / plain_seconds)
        return rows, panels


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, ""]
    for task, metrics in TASKS.items():
        if not any(r["task"] == task for r in rows):
            continue
        lines += [f"### {task}", "", "| method | scale | detach_unet | " + " | ".join(metrics)
                  + " | s / image | cost vs unguided |", "|---" * (len(metrics) + 5) + "|"]
        for r in (r for r in rows if r["task"] == task):
            cells = [r["method"], format_value(r.get("scale")), format_value(r.get("detach_unet"))]
            cells += [format_value(r[m], r[f"{m}_se"]) for m in metrics]
            cells += [format_value(r.get("seconds_per_image")), format_value(r.get("cost_ratio"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="train_ldm run dir or .ckpt (unconditional LDM)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (eta 0)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--box", default="10,10,12,12", help="unknown region top,left,height,width")
    parser.add_argument("--out", type=Path, default=HERE, help="where tables and strips go")
    parser.add_argument("--loss", choices=("l2", "lpips"), default="l2", help="guidance.loss")
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep")
    sweep.add_argument("--sr-scales", type=float, nargs="*", default=[0.3, 0.5, 1, 2, 4], help="none: skip")
    sweep.add_argument("--inpaint-scales", type=float, nargs="*", default=[0.01, 0.03, 0.1, 0.2, 0.4])
    run = commands.add_parser("run")
    run.add_argument("--num-images", type=int, default=100)
    for name in ("--sr-scale", "--inpaint-scale"):
        run.add_argument(name, type=float, nargs=2, required=True, help="for detach_unet false, true")
    args = parser.parse_args()
    experiment = Experiment(args.ckpt, args.steps, args.batch_size, args.seed, args.box, args.loss)
    header = (f"guidance.loss={args.loss}, DDIM {args.steps} steps (eta 0), seed {args.seed}, box {args.box} "
              "(top,left,height,width); mean ± standard error over the images.")
    rows = []
    if args.command == "sweep":
        truth = experiment.truth(SWEEP_START, SWEEP_COUNT)
        for task, scales in (("super_resolution", args.sr_scales), ("inpainting", args.inpaint_scales)):
            if scales:
                rows += experiment.compare(task, truth, [(s, d) for d in (False, True) for s in scales])[0]
        write_csv(rows, args.out / "image_guidance_sweep.csv")
        span = f"Sweep: test images {SWEEP_START}–{SWEEP_START + SWEEP_COUNT - 1}, {header}"
        (args.out / "image_guidance_sweep.md").write_text(markdown(rows, span))
        return
    truth = experiment.truth(0, args.num_images)
    for task, scales in (("super_resolution", args.sr_scale), ("inpainting", args.inpaint_scale)):
        task_rows, panels = experiment.compare(task, truth, list(zip(scales, (False, True), strict=True)))
        rows += task_rows
        shown = (F.interpolate(downsample(truth, LOW_RES).clamp(-1, 1), size=truth.shape[-2:], mode="nearest")
                 if task == "super_resolution" else truth * box_mask(args.box, *truth.shape[-2:]))
        strip = torch.cat([p[:8] for p in (shown, *panels, truth)])
        save_image(to_unit(strip), args.out / f"image_guidance_{task}.png", nrow=8, padding=1, pad_value=1.0)
    write_csv(rows, args.out / "image_guidance.csv")
    (args.out / "image_guidance.md").write_text(markdown(rows, f"N = {args.num_images} test images 0–"
                                                               f"{args.num_images - 1}, {header}"))


if __name__ == "__main__":
    main()
