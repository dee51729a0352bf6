"""Suite ``sweep``: where a guidance sweep's time goes: sampling vs feature networks vs metrics, with
the reference features reused.

For a trained LDM checkpoint it times, in one process:

1. the reference set's features, cold (empty feature cache) and warm (cache hit);
2. a sweep over K guidance scales (``grid_sweep``, as the callback and ``make evaluate`` run it),
   with per-scale sampling, feature-network and metric seconds;

and prints the breakdown and the ratio  total / (K × (mean sampling + mean features + mean metrics)),
which is ≈ 1 when the reference features are computed once and reused. Run after ``make train-ldm``:

    .venv/bin/python benchmarks/bench.py sweep [--ckpt ...] [--classifier-ckpt ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from sbs.timing import seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", default=None, help="train_ldm .ckpt or run dir (default: newest run)")
    parser.add_argument("--classifier-ckpt", default=None, help="also time the domain-classifier metrics")
    parser.add_argument("--scales", default="1,2,3,5")
    parser.add_argument("--num-samples", type=int, default=300)
    parser.add_argument("--num-reference", type=int, default=1000)
    parser.add_argument("--sampler-steps", type=int, default=20)
    parser.add_argument("--fid-layer", default="64")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ldmlab.commands.evaluate import stored_datamodule
    from ldmlab.conditioning.condition_builder import build_condition
    from ldmlab.evaluation.grid import sampler_grid
    from ldmlab.evaluation.reference import load_reference
    from ldmlab.evaluation.sweep import grid_sweep
    from ldmlab.guidance.cfg import ClassifierFreeGuidance
    from ldmlab.metrics.fidelity import FidelityEvaluator
    from ldmlab.models.restore import load_ldm, resolve_ldm_checkpoint
    from ldmlab.sampling.samplers.dpmpp_2m import DPMPP2MSampler

    scales = [float(s) for s in args.scales.split(",")]

    path = resolve_ldm_checkpoint(args.ckpt, "logs")
    module = load_ldm(path)
    datamodule = stored_datamodule(path)
    reference, dataset = load_reference(datamodule, "test", args.num_reference)
    with tempfile.TemporaryDirectory() as cache:
        evaluator = FidelityEvaluator(reference, fid_feature_layer=args.fid_layer,
                                      classifier_ckpt=args.classifier_ckpt,
                                      kid_subset_size=min(100, args.num_samples, args.num_reference),
                                      kid_subsets=50, batch_size=100, cache_root=cache)
        probe = torch.rand(args.num_reference, *reference.image_shape) * 2 - 1
        cold = seconds(lambda: evaluator(probe))  # reference features computed and cached
        warm = seconds(lambda: evaluator(probe))  # cache hit: only the probe's features
        condition = build_condition(module.ema.shadow["conditioner"], args.num_samples, source=dataset)
        rows = []

        def sweep() -> None:
            sampler = DPMPP2MSampler(steps=args.sampler_steps)
            samplers = sampler_grid(sampler, None, module.schedule.num_timesteps)
            rows.extend(grid_sweep(module, evaluator, condition, ClassifierFreeGuidance(), scales,
                                   args.num_samples, samplers=samplers, batch_size=100))

        total = seconds(sweep)

    sampling = [row["sampling_seconds"] for row in rows]
    features = [row["feature_seconds"] for row in rows]
    metrics = [row["metric_seconds"] for row in rows]
    k = len(rows)
    predicted = sum(sampling) + sum(features) + sum(metrics)  # K × the three means
    networks = "+".join(n.tag for n in evaluator.networks)
    print(f"checkpoint {Path(path).name}; {args.num_samples} samples/scale, "
          f"DPM-Solver++ {args.sampler_steps} steps, metrics: {networks} "
          f"(Inception layer {args.fid_layer}), {torch.get_num_threads()} threads")
    print(f"reference features ({args.num_reference} images): cold {cold - warm:.1f} s extra, "
          f"reused from cache afterwards")
    for row in rows:
        print(f"  s={row['guidance_scale']:<4g} sampling {row['sampling_seconds']:6.1f} s   "
              f"features {row['feature_seconds']:6.1f} s   metrics {row['metric_seconds']:6.1f} s")
    print(f"sweep of K={k} scales: {total:.1f} s; K × (mean sampling {sum(sampling) / k:.1f} s "
          f"+ mean features {sum(features) / k:.1f} s + mean metrics {sum(metrics) / k:.1f} s) "
          f"= {predicted:.1f} s; ratio {total / predicted:.3f}")
    per_image = 1e3 / (k * args.num_samples)
    print(f"per image: sampling {sum(sampling) * per_image:.1f} ms, "
          f"features {sum(features) * per_image:.1f} ms, metrics {sum(metrics) * per_image:.1f} ms")
