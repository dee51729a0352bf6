"""A sweep's samples and scores do not depend on how it is spread: 1 process vs 2 gloo ranks vs
another batch size, with stochastic samplers (DDPM, EDM with churn) and CFG's 2B pass; features
(not images) are gathered; every row carries its provenance, its NFE checked against the
backbone calls counted while drawing.

The model is a 32-px pixel model with a batch-invariant denoiser (``Pointwise``), so images can
be compared bit for bit across batch sizes; the metrics come from the tiny domain classifier
(16-d features), so 20 samples suffice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ldmlab
from ldmlab.conditioning.condition_builder import build_condition
from ldmlab.evaluation.columns import PROVENANCE, is_timing
from ldmlab.evaluation.grid import sampler_grid
from ldmlab.evaluation.reference import load_reference
from ldmlab.evaluation.sweep import draw_images, draw_samples, grid_sweep
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.sampling.samplers.ddpm import DDPMSampler
from ldmlab.sampling.samplers.edm import EDMSampler
from tests.unit.evaluation.test_guidance_sweep import datamodule
from tests.unit.guidance.tiny_ldm import batch_sizes
from tests.unit.models.test_classifier import tiny_classifier_ckpt
from tests.unit.sampling.batch_invariant import pointwise_ldm

N = 20
CASES = {  # name: (module overrides, sampler, guidance scales, NFE per image at each scale)
    "ddpm": ((), DDPMSampler(steps=3), [1.0, 3.0], [3, 6]),  # s = 1: one pass; s = 3: [cond; uncond]
    "edm-churn": (("diffusion/objective=edm",), EDMSampler(steps=4, s_churn=10.0), [2.0], [14]),
}  # EDM: 2·4 − 1 Heun calls, each of batch 2B under CFG


@pytest.fixture(scope="module")
def classifier_ckpt(fmnist_dir, tmp_path_factory) -> Path:
    return tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)


def sweeps(classifier: Path, data_dir: Path, cache: Path, batch_size: int) -> dict:
    """Per case: (uint8 images of seed 1 at s = 3 or None off rank 0, the sweep's rows over seeds
    0 and 1), N samples drawn in batches of ``batch_size``; and the evaluator's provenance."""
    reference, dataset = load_reference(datamodule(data_dir), "test", 40)
    evaluator = FidelityEvaluator(reference, inception=False, classifier_ckpt=str(classifier),
                                  kid_subset_size=16, kid_subsets=10, cache_root=str(cache))
    out = {"provenance": evaluator.provenance()}
    for name, (overrides, sampler, scales, _) in CASES.items():
        module = pointwise_ldm(*overrides, resolution=32)
        condition = build_condition(module.ema.shadow["conditioner"], N, source=dataset)
        images = draw_samples(module, condition, N, ClassifierFreeGuidance(3.0), seed=1,
                              batch_size=batch_size, sampler=sampler)
        samplers = sampler_grid(sampler, None, module.schedule.num_timesteps)
        rows = grid_sweep(module, evaluator, condition, ClassifierFreeGuidance(), scales, N,
                          samplers=samplers, seeds=[0, 1], batch_size=batch_size)
        out[name] = (images, rows)
    return out


def _on_rank(rank: int, world: int, tmp: str, classifier: str, data_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    out = sweeps(Path(classifier), Path(data_dir), Path(tmp) / "cache", batch_size=8)
    torch.save(out, f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not is_timing(k)} for row in rows]


def test_ranks_and_batch_sizes_give_the_same_samples_and_scores(classifier_ckpt, fmnist_dir, tmp_path):
    mp.start_processes(_on_rank, args=(2, str(tmp_path), str(classifier_ckpt), str(fmnist_dir)), nprocs=2,
                       start_method="fork")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    alone = sweeps(classifier_ckpt, fmnist_dir, tmp_path / "alone", batch_size=8)
    other = sweeps(classifier_ckpt, fmnist_dir, tmp_path / "other", batch_size=6)  # batches 6, 6, 6, 2
    for name in CASES:
        (images, rows), (_, rows1) = rank0[name], rank1[name]
        # rank 0 drew batches 0 and 2 (images 0–7, 16–19), rank 1 batch 1; rank 0 holds all, in order
        assert rank1[name][0] is None and torch.equal(images, alone[name][0])
        assert torch.equal(images, other[name][0])  # another batching: every image's noise is its own
        assert untimed(rows) == untimed(rows1) == untimed(alone[name][1])  # same batches: same bits
        for mine, theirs in zip(rows, other[name][1], strict=True):  # other features batches: ≤ rounding
            assert mine.keys() == theirs.keys()
            for key, value in untimed([mine])[0].items():
                assert theirs[key] == (pytest.approx(value, rel=1e-5, abs=1e-7) if isinstance(value, float)
                                       else value), key
        assert rows[0]["fid_classifier"] != rows[1]["fid_classifier"]  # seeds 0 and 1 draw other images


def test_rows_carry_their_provenance_and_counted_nfe(classifier_ckpt, fmnist_dir, tmp_path):
    out = sweeps(classifier_ckpt, fmnist_dir, tmp_path, batch_size=8)
    for name, (overrides, sampler, scales, nfe) in CASES.items():
        rows = out[name][1]
        assert [(r["guidance_scale"], r["seed"]) for r in rows] == [(s, k) for s in scales for k in (0, 1)]
        assert [row["nfe"] for row in rows] == [n for n in nfe for _ in (0, 1)]
        for row in rows:
            version = ldmlab.__version__
            assert {key: row[key] for key in PROVENANCE} == {"num_samples": N, **out["provenance"],
                                                            "nfe": row["nfe"], "ldmlab_version": version}
        module = pointwise_ldm(*overrides, resolution=32)
        for scale, expected in zip(scales, nfe, strict=True):  # the backbone's calls, counted by a hook
            with batch_sizes(module.ema.shadow["backbone"]) as (sizes,):
                draw_images(module, {"label": torch.arange(5)}, range(5), ClassifierFreeGuidance(scale),
                            sampler=sampler)
            assert sum(sizes) == 5 * expected
    assert out["provenance"]["num_reference"] == 40
    assert out["provenance"]["reference"].startswith("fashionmnist-test-32px")
    assert out["provenance"]["feature_networks"].startswith("classifier")
