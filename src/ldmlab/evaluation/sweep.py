"""Fidelity metrics of one model at several scales of its configured guidance.

The swept scale is the guidance's own (``Guidance.with_scale``): CFG's s with
ε̃ = ε_u + s·(ε_c − ε_u) (s = 1: no guidance; those rows also carry Ho & Salimans' w = s − 1),
classifier guidance's s in ε̂ − s·sqrt(1 − ᾱ_t)·∇ log p(y | x_t) (s = 0: none), …; every row
names the guidance (``guidance``) so CFG and classifier sweeps can share one table and frontier.

Reproducible under any process count: the samples of a scale are drawn in chunks of
``batch_size``, chunk i from a generator seeded ``seed + i`` (the same noise at every scale);
rank r of W draws chunks i ≡ r (mod W), rank 0 gathers them in chunk order and computes the
metrics once, and every rank returns rank 0's rows. So 1 or N processes give the same numbers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from functools import partial

import torch

from ldmlab.conditioning.condition_builder import chunk_of
from ldmlab.diffusion.guidance.base import Guidance
from ldmlab.diffusion.guidance.cfg import ClassifierFreeGuidance
from ldmlab.diffusion.module import LatentDiffusionModule
from ldmlab.diffusion.samplers.base import Sampler
from ldmlab.evaluation.distributed import gather_chunks, on_rank_zero, rank_and_world
from ldmlab.evaluation.table import Row
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.reference_stats import to_uint8
from ldmlab.utils.errors import ConfigError

LOWER_IS_BETTER = ("fid_", "kid_")
NOT_METRICS = ("guidance", "guidance_scale", "w", "sampling_seconds", "metric_seconds")
log = logging.getLogger(__name__)


def check_settings(
    guidance_scales: Sequence[float], num_samples: int, batch_size: int, prefix: str = ""
) -> list[float]:
    """The scales as floats; bad values raise ConfigError naming ``<prefix><key>``."""
    scales = [float(s) for s in guidance_scales or ()]
    if not scales:
        raise ConfigError(f"{prefix}guidance_scales", "is empty", f"e.g. {prefix}guidance_scales=[1,2,3,5]")
    if any(s < 0 or not math.isfinite(s) for s in scales):
        raise ConfigError(f"{prefix}guidance_scales", f"{scales} has a negative or non-finite scale",
                          "use scales ≥ 0 (s = 1: no guidance, s = 0: unconditional)")
    for key, value in ((f"{prefix}num_samples", num_samples), (f"{prefix}batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(key, f"must be a positive integer, got {value!r}", f"e.g. {key}=100")
    return scales


@torch.no_grad()
def draw_samples(
    module: LatentDiffusionModule, condition: dict, num_samples: int, guidance: Guidance, seed: int = 0,
    batch_size: int = 64, sampler: Sampler | None = None, use_ema: bool = True,
) -> torch.Tensor | None:
    """uint8 (num_samples, C, H, W) on rank 0 (None elsewhere): this rank's chunks, gathered."""
    rank, world = rank_and_world()
    local = {}
    for index in range(rank, math.ceil(num_samples / batch_size), world):
        start, stop = index * batch_size, min((index + 1) * batch_size, num_samples)
        generator = torch.Generator(device=module.device).manual_seed(seed + index)
        images = module.generate(chunk_of(condition, start, stop, module.device), stop - start,
                                 guidance=guidance, sampler=sampler, generator=generator, use_ema=use_ema)
        local[index] = to_uint8(images)
    return gather_chunks(local)


def guidance_sweep(
    module: LatentDiffusionModule, evaluator: FidelityEvaluator, condition: dict, guidance: Guidance,
    guidance_scales: Sequence[float], num_samples: int, **sampling,
) -> list[Row]:
    """One row per scale: ``{guidance, guidance_scale, [w,] <evaluator metrics>, sampling_seconds,
    metric_seconds}``, sampled with ``guidance.with_scale(s)``.

    condition: the inputs for all ``num_samples`` samples (``guided_condition``); its ``label``
    entry, when present, scores ``accuracy_classifier``. sampling: ``seed``, ``batch_size``,
    ``sampler`` (None: the module's), ``use_ema`` of ``draw_samples``. Every rank returns the same
    rows; call it on every rank.
    """
    labels = condition.get("label")
    rows = []
    for scale in guidance_scales:
        guided = guidance.with_scale(scale)
        started = time.perf_counter()
        images = draw_samples(module, condition, num_samples, guided, **sampling)
        seconds = time.perf_counter() - started
        rows.append(on_rank_zero(partial(_score, evaluator, images, labels, guided, seconds)))
        if rank_and_world()[0] == 0:
            log.info("guidance sweep: %s", rows[-1])
    return rows


def _score(evaluator: FidelityEvaluator, images: torch.Tensor, labels: torch.Tensor | None,
           guidance: Guidance, sampling_seconds: float) -> Row:
    started = time.perf_counter()
    metrics = evaluator(images.float() / 127.5 - 1, labels)
    seconds = {"sampling_seconds": round(sampling_seconds, 2),
               "metric_seconds": round(time.perf_counter() - started, 2)}
    scale = {"guidance": guidance.name, "guidance_scale": guidance.scale}
    if isinstance(guidance.swept, ClassifierFreeGuidance):
        scale["w"] = guidance.scale - 1
    return {**scale, **metrics, **seconds}


def metric_keys(rows: Sequence[Row]) -> list[str]:
    """Metric columns of sweep rows, without torch-fidelity's ``*_std`` spreads."""
    keys = dict.fromkeys(key for row in rows for key in row)
    return [k for k in keys if k not in NOT_METRICS and not k.endswith("_std")]


def first_key(keys: Sequence[str], prefix: str) -> str | None:
    return next((k for k in keys if k.startswith(prefix)), None)


def select_best(rows: Sequence[Row], select_by: str | None = None, key: str = "select_by") -> tuple[str, Row]:
    """(metric, best row) by ``select_by`` (default: the first FID key). ``fid_*``/``kid_*`` are
    lower-is-better, every other metric (IS, accuracy, precision, recall) higher-is-better."""
    available = metric_keys(rows)
    metric = select_by or first_key(available, "fid_")
    if metric not in available:
        raise ConfigError(key, f"{metric!r} is not among the sweep's metrics {available}",
                          f"use one of {available}")
    sign = 1 if metric.startswith(LOWER_IS_BETTER) else -1
    return metric, min(rows, key=lambda row: sign * row[metric])
