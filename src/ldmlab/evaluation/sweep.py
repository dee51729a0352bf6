"""Fidelity metrics of one model over a grid: guidance settings × sampler settings × guidance scales
× sampling seeds.

The swept scale is the guidance's own (``Guidance.with_scale``): CFG's s with
ε̃ = ε_u + s·(ε_c − ε_u) (s = 1: no guidance; those rows also carry Ho & Salimans' w = s − 1),
classifier guidance's s in ε̂ − s·sqrt(1 − ᾱ_t)·∇ log p(y | x_t) (s = 0: none), …; every row
names the guidance (``guidance``) so CFG and classifier sweeps can share one table and frontier.
Sampler settings come as (point, sampler) pairs from ``ldmlab.evaluation.grid.sampler_grid``,
guidance settings (e.g. interval bounds) as (point, guidance) pairs from
``ldmlab.evaluation.guidance_grid.guidance_grid``.

Scale-independent: image i of sampling seed k has its own noise stream, a generator seeded
``image_seed(k, i)`` = k·10⁶ + i (``ldmlab.evaluation.seeds``; the same noise at every scale and
sampler setting), which alone drives its initial noise, in-loop noise and ES-DDPM prior sample
(``ldmlab.utils.noise.PerImageGenerator``). The N images of a cell are cut into the batches
[k·B, (k+1)·B) of ``batch_size`` B; rank r of W draws the batches k ≡ r (mod W), turns each into
the evaluator's features at once (``FidelityEvaluator.features``: features, not images, cross
ranks), and the feature rows are gathered on rank 0 in image order, where the metrics are computed
once (``FidelityEvaluator.score``); every rank returns rank 0's rows. 1 or W processes draw the
same batches, so their images and numbers are bitwise equal; another batch size or batch order
gives every image the same noise, and its images differ at most by the float rounding of batched
kernels (BLAS picks its kernel by the batch's shape).

Every row carries its provenance (``ldmlab.evaluation.columns.PROVENANCE``): ``num_samples``,
the evaluator's ``num_reference`` / ``reference`` / ``feature_networks``, ``nfe`` (denoiser
evaluations per image, counted on rank 0's batches: ``ldmlab.sampling.nfe``) and
``ldmlab_version``. Timings (rank 0's): ``sampling_seconds`` in the sampler and decoder,
``seconds_per_image`` = that per image of rank 0 (one device's cost, whatever W),
``feature_seconds`` in the feature networks, ``metric_seconds`` in ``score``.

Errors about the sweep's settings name the fields of the ``sweep`` part (top-level keys for
``evaluate``; the training callback installs ``callbacks.guidance_sweep``).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

import ldmlab
from ldmlab.evaluation.columns import LOWER_IS_BETTER, first_key, metric_keys
from ldmlab.evaluation.grid import Point, sampler_grid
from ldmlab.evaluation.seeds import IMAGE_STRIDE, MAX_SEEDS, image_seed
from ldmlab.evaluation.table import Row
from ldmlab.guidance.base import BoundGuidance, Guidance
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.reference_stats import to_uint8
from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.sampling.nfe import counted_evaluations
from ldmlab.sampling.samplers.base import Sampler
from ldmlab.utils.distributed import gather_chunks, on_rank_zero, rank_and_world
from ldmlab.utils.errors import FieldError
from ldmlab.utils.noise import PerImageGenerator
from ldmlab.utils.progress import Progress

log = logging.getLogger(__name__)


def check_settings(guidance_scales: Sequence[float], num_samples: int, batch_size: int) -> list[float]:
    """The scales as floats; bad values raise FieldError naming the ``sweep`` part's field."""
    scales = [float(s) for s in guidance_scales or ()]
    if not scales:
        raise FieldError("sweep", "guidance_scales", "is empty", "e.g. {key}=[1,2,3,5]")
    if any(s < 0 or not math.isfinite(s) for s in scales):
        raise FieldError("sweep", "guidance_scales", f"{scales} has a negative or non-finite scale",
                         "use scales ≥ 0 (s = 1: no guidance, s = 0: unconditional)")
    for field, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise FieldError("sweep", field, f"must be a positive integer, got {value!r}", "e.g. {key}=100")
    if num_samples > IMAGE_STRIDE:
        raise FieldError("sweep", "num_samples", f"{num_samples} is more images than one sampling seed "
                         f"names ({IMAGE_STRIDE})", f"use {{key}}={IMAGE_STRIDE} and more seeds")
    return scales


def check_seeds(seeds: Sequence[int] | int) -> list[int]:
    """Sampling seeds as distinct ints in [0, 4294) (a single int is one seed; ``image_seed``)."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds or ())
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < MAX_SEEDS
                        for s in seeds) or len(set(seeds)) != len(seeds):
        raise FieldError("sweep", "seeds", f"must be distinct non-negative integers below {MAX_SEEDS}, "
                         f"got {seeds!r}", "e.g. {key}=[0,1,2]")
    return seeds


def batches(num_samples: int, batch_size: int) -> list[range]:
    """This rank's image indices, batch by batch: [k·B, min((k + 1)·B, N)) for k ≡ rank (mod world)."""
    rank, world = rank_and_world()
    return [range(start, min(start + batch_size, num_samples))
            for start in range(rank * batch_size, num_samples, world * batch_size)]


def rows_of(condition: dict, indices: Sequence[int], device: torch.device) -> dict:
    """Entries ``indices`` of every input (N leading), tensors moved to ``device``."""
    picked = torch.as_tensor(list(indices), dtype=torch.long)
    return {key: value[picked.to(value.device)].to(device) if torch.is_tensor(value)
            else [value[i] for i in indices] for key, value in condition.items()}


@torch.no_grad()
def draw_images(
    module: LatentDiffusionModule, condition: dict, indices: Sequence[int],
    guidance: Guidance | BoundGuidance, *, seed: int = 0, sampler: Sampler | None = None,
    use_ema: bool = True,
) -> torch.Tensor:
    """uint8 (len(indices), C, H, W) on the CPU: images ``indices`` of ``condition`` under sampling
    seed ``seed``, drawn as one batch; image i's noise comes from its generator ``image_seed(seed, i)``."""
    generator = PerImageGenerator([image_seed(seed, i) for i in indices], module.device)
    images = module.generate(rows_of(condition, indices, module.device), len(indices), guidance=guidance,
                             sampler=sampler, generator=generator, use_ema=use_ema)
    return to_uint8(images)


@torch.no_grad()
def draw_samples(
    module: LatentDiffusionModule, condition: dict, num_samples: int, guidance: Guidance | BoundGuidance,
    seed: int = 0,
    batch_size: int = 64, sampler: Sampler | None = None, use_ema: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> torch.Tensor | None:
    """uint8 (num_samples, C, H, W) on rank 0 (None elsewhere): this rank's ``batches``, gathered.
    on_chunk: called with each drawn batch's size (progress)."""
    local = {}
    for batch in batches(num_samples, batch_size):
        local[batch.start] = draw_images(module, condition, batch, guidance, seed=seed, sampler=sampler,
                                         use_ema=use_ema)
        if on_chunk is not None:
            on_chunk(len(batch))
    return gather_chunks(local)


@dataclass
class Drawn:
    """One cell's draw as rank 0 sees it: the features of all images (``None`` on other ranks),
    NFE per image, and rank 0's seconds and image count in sampling and in the feature networks."""

    features: dict[str, torch.Tensor] | None
    nfe: int | float | None
    images: int
    sampling_seconds: float
    feature_seconds: float


@torch.no_grad()
def draw_features(
    module: LatentDiffusionModule, evaluator: FidelityEvaluator, condition: dict, num_samples: int,
    guidance: Guidance | BoundGuidance, *, seed: int = 0, batch_size: int = 64,
    sampler: Sampler | None = None, use_ema: bool = True, on_chunk: Callable[[int], None] | None = None,
) -> Drawn:
    """``evaluator.features`` of images 0 … N − 1, each rank drawing its ``batches``; the rows
    gathered on rank 0 in image order. on_chunk: called with each batch's size (progress)."""
    local, sampling, featuring, images = {}, 0.0, 0.0, 0
    with counted_evaluations() as evaluations:
        for batch in batches(num_samples, batch_size):
            started = time.perf_counter()
            images_of_batch = draw_images(module, condition, batch, guidance, seed=seed, sampler=sampler,
                                          use_ema=use_ema)
            sampling += (lap := time.perf_counter()) - started
            local[batch.start] = evaluator.features(images_of_batch)
            featuring += time.perf_counter() - lap
            images += len(batch)
            if on_chunk is not None:
                on_chunk(len(batch))
    nfe = evaluations.per_image(images) if images else None
    return Drawn(gather_chunks(local), nfe, images, sampling, featuring)


def grid_sweep(
    module: LatentDiffusionModule, evaluator: FidelityEvaluator, condition: dict, guidance: Guidance,
    guidance_scales: Sequence[float], num_samples: int, *,
    samplers: Sequence[tuple[Point, Sampler]] | None = None, seeds: Sequence[int] = (0,),
    batch_size: int = 64, use_ema: bool = True, guidances: Sequence[tuple[Point, Guidance]] | None = None,
) -> list[Row]:
    """One row per (guidance point, sampler point, scale, seed), in that nesting: ``{guidance,
    guidance_scale, [w,] guidance.<setting>…, sampler, sampler.<setting>…, seed, <evaluator
    metrics>, <provenance>, <timings>}``, sampled with ``<point's guidance>.with_scale(s)``.

    condition: the inputs for all ``num_samples`` samples (``guided_condition``); its ``label``
    entry, when present, scores ``accuracy_classifier``. samplers: ``sampler_grid`` pairs (None:
    the module's sampler). guidances: ``guidance_grid`` pairs (None: ``guidance`` as it is).
    Average over seeds with ``mean_over_seeds``. Every rank returns the same rows; call it on
    every rank.
    """
    guidances = guidances or [({}, guidance)]
    samplers = samplers or sampler_grid(module.sampler, None, module.schedule.num_timesteps,
                                              horizon=module.horizon)
    labels = condition.get("label")
    rank, _ = rank_and_world()
    mine = sum(map(len, batches(num_samples, batch_size)))
    rows = []
    cells = len(guidances) * len(samplers) * len(guidance_scales) * len(seeds)
    with Progress(cells * mine, "sweep (images)", enabled=rank == 0) as progress:
        for (settings, configured), (point, sampler) in itertools.product(guidances, samplers):
            for scale in guidance_scales:
                guided = configured.with_scale(scale)
                bound = module.prepare_guidance(guided, use_ema)  # checked once for every batch
                for seed in seeds:
                    where = {**_scale_columns(guided), **settings, **point, "seed": seed}
                    note = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in where.items()
                                     if k not in ("w", "guidance"))
                    drawn = draw_features(module, evaluator, condition, num_samples, bound, seed=seed,
                                          batch_size=batch_size, sampler=sampler, use_ema=use_ema,
                                          on_chunk=partial(progress.advance, note=note))
                    rows.append(on_rank_zero(partial(_score, evaluator, drawn, labels, where, num_samples)))
                    if rank == 0:
                        log.info("sweep: %s", rows[-1])
    return rows


def _scale_columns(guidance: Guidance) -> Row:
    columns = {"guidance": guidance.name, "guidance_scale": guidance.scale}
    if isinstance(guidance.swept, ClassifierFreeGuidance):
        columns["w"] = guidance.scale - 1
    return columns


def _score(evaluator: FidelityEvaluator, drawn: Drawn, labels: torch.Tensor | None, where: Row,
           num_samples: int) -> Row:
    started = time.perf_counter()
    metrics = evaluator.score(drawn.features, labels)
    provenance = {"num_samples": num_samples, **evaluator.provenance(), "nfe": drawn.nfe,
                  "ldmlab_version": ldmlab.__version__}
    seconds = {"sampling_seconds": round(drawn.sampling_seconds, 3),
               "seconds_per_image": drawn.sampling_seconds / drawn.images,
               "feature_seconds": round(drawn.feature_seconds, 3),
               "metric_seconds": round(time.perf_counter() - started, 2)}
    return {**where, **metrics, **provenance, **seconds}


def check_select_by(select_by: str | None, available: Sequence[str]) -> str:
    """The metric that picks the best row: ``select_by``, by default the first FID key of
    ``available`` (the metrics the sweep computes; checked before it starts, and again on its rows)."""
    metric = select_by or first_key(available, "fid_")
    if metric not in available:
        raise FieldError("sweep", "select_by", f"{metric!r} is not among the sweep's metrics "
                         f"{list(available)}",
                         f"{{key}}={available[0]}" if available else "compute a metric")
    return metric


def select_best(rows: Sequence[Row], select_by: str | None = None) -> tuple[str, Row]:
    """(metric, best row) by ``select_by`` (default: the first FID key). ``fid_*``/``kid_*`` are
    lower-is-better, every other metric (IS, accuracy, precision, recall) higher-is-better."""
    metric = check_select_by(select_by, metric_keys(rows))
    sign = 1 if metric.startswith(LOWER_IS_BETTER) else -1
    return metric, min(rows, key=lambda row: sign * row[metric])
