"""Suite ``guidance``: what guidance costs at sampling time, each guidance type vs unguided, same work.

For one trained LDM it times, in one process and on the same seeds, N samples of DDIM (K steps) with
no guidance, CFG (2B batched pass), classifier guidance (classifier backward per step; needs
``--classifier-ckpt``), CFG + classifier, and image guidance (L2 to a bicubic 8×8 target) with the
exact gradient through the UNet and with the UNet detached. Prints seconds per image and the ratio
to unguided sampling; each row is the median of ``--repeats`` timed runs after one warm-up.

    .venv/bin/python benchmarks/bench.py guidance --ckpt logs/train_ldm/latest \
        [--classifier-ckpt logs/train_noisy_classifier/latest] [--num-samples 64 --steps 25]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sbs.timing import median_seconds


def low_res_targets(path: Path, num_samples: int, folder: Path) -> Path:
    """An .npz of ``num_samples`` bicubic 8×8 test images of the checkpoint's own data."""
    from ldmlab.commands.evaluate import stored_datamodule
    from ldmlab.evaluation.reference import load_reference

    _, dataset = load_reference(stored_datamodule(path), "test", num_samples)
    images = torch.stack([dataset[i]["image"] for i in range(num_samples)]).float()
    small = F.interpolate(images, size=(8, 8), mode="bicubic", antialias=True).clamp(-1, 1)
    target = folder / "targets.npz"
    np.savez(target, images=small.permute(0, 2, 3, 1).numpy())
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", default=None, help="train_ldm .ckpt or run dir (default: newest run)")
    parser.add_argument("--classifier-ckpt", default=None, help="train_noisy_classifier .ckpt or run dir")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ldmlab.guidance.cfg import ClassifierFreeGuidance
    from ldmlab.guidance.classifier import ClassifierGuidance
    from ldmlab.guidance.composite import CompositeGuidance
    from ldmlab.guidance.image import ImageGuidance
    from ldmlab.models.restore import load_ldm, resolve_ldm_checkpoint
    from ldmlab.sampling.samplers.ddim import DDIMSampler

    path = resolve_ldm_checkpoint(args.ckpt, "logs")
    module = load_ldm(path)
    conditional = bool(module.ema.shadow["conditioner"].embedders)
    sampler = DDIMSampler(steps=args.steps)
    with tempfile.TemporaryDirectory() as folder:
        target = low_res_targets(path, args.num_samples, Path(folder))
        variants = {"unguided": None}
        if conditional:
            variants["cfg s=3"] = ClassifierFreeGuidance(3.0)
        if args.classifier_ckpt:
            classifier = ClassifierGuidance(2.0, classifier_ckpt=args.classifier_ckpt)
            variants["classifier s=2"] = classifier
            if conditional:
                variants["cfg s=3 + classifier s=2"] = CompositeGuidance(
                    {"cfg": ClassifierFreeGuidance(3.0), "classifier": classifier}, "classifier")
        for detach in (False, True):
            variants[f"image l2 (detach_unet={detach})"] = ImageGuidance(
                target=str(target), transform="downsample", loss="l2", scale=1.0, detach_unet=detach)
        seconds = {name: time_variant(module, guidance, sampler, args) for name, guidance in variants.items()}

    base = seconds["unguided"]
    print(f"checkpoint {path}; {args.num_samples} samples, DDIM {args.steps} steps, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for name, value in seconds.items():
        per_image = value / args.num_samples * 1e3
        print(f"  {name:<34} {per_image:8.1f} ms/image   ×{value / base:5.2f} vs unguided")


def time_variant(module, guidance, sampler, args) -> float:
    """Median seconds of one sampling run; the warm-up loads the classifier / LPIPS and the allocator."""
    from ldmlab.guidance.inputs import guided_condition

    condition = guided_condition(module.ema.shadow["conditioner"], guidance, args.num_samples)

    def run() -> None:
        module.generate(condition, args.num_samples, guidance=guidance, sampler=sampler,
                        generator=torch.Generator().manual_seed(0))

    return median_seconds(run, args.repeats)
