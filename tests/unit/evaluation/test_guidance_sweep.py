"""Guidance sweep on a real tiny LDM: the in-run callback's outputs, its settings checks, best-scale
selection, and 2-rank DDP sampling that reproduces the single-process numbers exactly.

Metrics come from a tiny domain classifier (16-d features), so 20–30 samples per scale suffice.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.utils import instantiate
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import Subset

from ldmlab.callbacks.guidance_sweep import GuidanceSweep
from ldmlab.conditioning.condition_builder import build_condition
from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.evaluation.columns import is_timing
from ldmlab.evaluation.grid import sampler_grid
from ldmlab.evaluation.reference import load_reference
from ldmlab.evaluation.sweep import check_settings, draw_samples, grid_sweep, select_best
from ldmlab.evaluation.table import read_csv
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.models.restore import load_ldm
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.distributed import on_rank_zero
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.wandb_logger import make_wandb_logger
from tests.conftest import compose_config
from tests.unit.models.test_classifier import tiny_classifier_ckpt

KID = {"kid_subset_size": 16, "kid_subsets": 10}
SCALES = [1.0, 3.0]


@pytest.fixture(scope="module")
def ldm_ckpt(tiny_ldm_run) -> Path:
    return (tiny_ldm_run / "train_ldm" / "latest" / "checkpoints" / "last.ckpt").resolve()


@pytest.fixture(scope="module")
def classifier_ckpt(fmnist_dir, tmp_path_factory) -> Path:
    return tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)


def datamodule(data_dir: Path) -> FashionMNISTDataModule:
    return FashionMNISTDataModule(str(data_dir), batch_size=16, train_subset=16, val_subset=16)


def metrics(classifier_ckpt: Path, cache: Path):
    return partial(FidelityEvaluator, inception=False, classifier_ckpt=str(classifier_ckpt),
                   cache_root=str(cache), **KID)


def test_callback_writes_csv_plots_logs_and_best_scale(ldm_ckpt, classifier_ckpt, fmnist_dir, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "guidance_sweep"
    sweep = GuidanceSweep(SCALES, num_samples=24, metrics=metrics(classifier_ckpt, tmp_path),
                          out_dir=str(out), num_reference=40, sampler=DDIMSampler(steps=3), batch_size=16)
    wandb_logger = make_wandb_logger(str(tmp_path), project="ldmlab-test")
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
        logger=[CSVLogger(tmp_path, name="csv"), wandb_logger], callbacks=[sweep], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    module = load_ldm(ldm_ckpt)
    module.optimizer = partial(torch.optim.AdamW, lr=1e-4)  # load_ldm restores no optimiser (not data)
    trainer.fit(module, datamodule=datamodule(fmnist_dir))
    wandb_logger.experiment.finish()

    rows = read_csv(out / "sweep_epoch000.csv")
    assert [row["guidance_scale"] for row in rows] == SCALES
    assert all(row["w"] == row["guidance_scale"] - 1 for row in rows)
    assert {"fid_classifier", "kid_classifier", "is_classifier", "accuracy_classifier"} <= set(rows[0])
    assert rows[0]["fid_classifier"] != rows[1]["fid_classifier"]  # the scale changes the samples
    assert (out / "sweep_epoch000.png").stat().st_size > 10_000
    best = min(rows, key=lambda row: row["fid_classifier"])
    assert sweep.summary_extras()["guidance_sweep"]["guidance_scale"] == best["guidance_scale"]
    assert json.loads((out / "best.json").read_text())["select_by"] == "fid_classifier"
    logged = trainer.callback_metrics
    assert float(logged["val/sweep/best_guidance_scale"]) == best["guidance_scale"]
    assert float(logged["val/sweep/best_score"]) == pytest.approx(best["fid_classifier"], rel=1e-6)
    accuracy = rows[1]["accuracy_classifier"]
    assert float(logged["sweep/accuracy_classifier@s=3,n=24"]) == pytest.approx(accuracy)
    assert "sweep/accuracy_classifier@s=3" not in logged  # every logged score names its sample count
    assert all(row["num_samples"] == 24 and row["num_reference"] == 40 for row in rows)
    tables = list(tmp_path.glob("wandb/offline-run-*/files/media/table/guidance_sweep/table_*.table.json"))
    columns = json.loads(tables[0].read_text())["columns"]
    assert len(tables) == 1 and columns[:3] == ["guidance", "guidance_scale", "w"]
    assert len(list(tmp_path.glob("wandb/offline-run-*/files/media/images/guidance_sweep/plot_*.png"))) == 1


def test_callback_sweeps_a_sampler_grid_over_seeds(ldm_ckpt, classifier_ckpt, fmnist_dir, tmp_path):
    out = tmp_path / "guidance_sweep"
    sweep = GuidanceSweep([3.0], num_samples=20, metrics=metrics(classifier_ckpt, tmp_path), out_dir=str(out),
                          num_reference=40, sampler=DDIMSampler(steps=3), batch_size=10,
                          grid={"steps": [2, 3], "eta": None}, seeds=[0, 1])
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                         num_sanity_val_steps=0, logger=CSVLogger(tmp_path, name="csv"), callbacks=[sweep],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    module = load_ldm(ldm_ckpt)
    module.optimizer = partial(torch.optim.AdamW, lr=1e-4)
    trainer.fit(module, datamodule=datamodule(fmnist_dir))
    cells, per_seed = read_csv(out / "sweep_epoch000.csv"), read_csv(out / "sweep_epoch000_per_seed.csv")
    assert [(c["sampler.steps"], c["seeds"]) for c in cells] == [(2, 2), (3, 2)]
    assert [(r["sampler.steps"], r["seed"]) for r in per_seed] == [(2, 0), (2, 1), (3, 0), (3, 1)]
    both = (per_seed[2]["fid_classifier"] + per_seed[3]["fid_classifier"]) / 2
    assert cells[1]["fid_classifier"] == pytest.approx(both)
    assert per_seed[2]["fid_classifier"] != per_seed[3]["fid_classifier"]  # seeds draw different noise
    logged = trainer.callback_metrics
    fid = cells[0]["fid_classifier"]
    assert float(logged["sweep/fid_classifier@s=3,steps=2,n=20"]) == pytest.approx(fid, rel=1e-6)
    assert sweep.summary_extras()["guidance_sweep"]["sampler.steps"] in (2, 3)


def test_callback_refuses_sample_counts_before_training(ldm_ckpt, classifier_ckpt, fmnist_dir, tmp_path):
    sweep = GuidanceSweep(SCALES, num_samples=16, metrics=metrics(classifier_ckpt, tmp_path),
                          out_dir=str(tmp_path), num_reference=40)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, callbacks=[sweep],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    module = load_ldm(ldm_ckpt)
    with pytest.raises(ConfigError, match=r"callbacks\.guidance_sweep\.num_samples.*16-d classifier"):
        trainer.fit(module, datamodule=datamodule(fmnist_dir))
    assert trainer.global_step == 0


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"guidance_scales": []}, "callbacks.guidance_sweep.guidance_scales"),
    ({"guidance_scales": [1.0, -2.0]}, "callbacks.guidance_sweep.guidance_scales"),
    ({"num_samples": 0}, "callbacks.guidance_sweep.num_samples"),
    ({"every_n_epochs": 0}, "callbacks.guidance_sweep.every_n_epochs"),
])
def test_callback_settings_are_checked(kwargs, key, tmp_path):
    settings = {"guidance_scales": SCALES, "num_samples": 8, "metrics": None, "out_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        GuidanceSweep(**(settings | kwargs))


def test_best_scale_direction_follows_the_metric():
    rows = [{"guidance_scale": 1.0, "w": 0.0, "fid_x": 5.0, "is_x": 2.0},
            {"guidance_scale": 3.0, "w": 2.0, "fid_x": 7.0, "is_x": 4.0}]
    assert select_best(rows) == ("fid_x", rows[0])  # FID: lower is better
    assert select_best(rows, "is_x") == ("is_x", rows[1])  # IS: higher is better
    with pytest.raises(ConfigError, match="select_by"):
        select_best(rows, "fid_inception")
    with pytest.raises(ConfigError, match="batch_size"):
        check_settings([1.0], 4, 0)


def test_conditions_cycle_classes_and_take_other_inputs_from_the_data(fmnist_dir):
    cfg = compose_config("train_ldm", ["conditioner=hybrid", f"paths.data_dir={fmnist_dir.parent}"])
    conditioner = instantiate(cfg.conditioner)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    items = [datamodule.test_set[i] for i in range(3)]
    condition = build_condition(conditioner, 5, source=Subset(datamodule.test_set, range(3)))
    assert condition["label"].tolist() == [0, 1, 2, 3, 4]  # balanced classes, not the data's labels
    assert condition["caption"] == [items[i % 3]["caption"] for i in range(5)]
    assert torch.equal(condition["lowres"], torch.stack([items[i % 3]["lowres"] for i in range(5)]))
    assert set(build_condition(conditioner, 5)) == {"label"}  # no data: the other inputs sample their nulls


def _sweep(ldm_ckpt: Path, classifier_ckpt: Path, data_dir: Path, cache: Path) -> tuple:
    """(uint8 images at s=3 or None, rows) of a 20-sample sweep in chunks of 8 (sizes 8, 8, 4)."""
    module = load_ldm(ldm_ckpt)
    reference, dataset = load_reference(datamodule(data_dir), "test", 40)
    evaluator = metrics(classifier_ckpt, cache)(reference=reference)
    condition = build_condition(module.ema.shadow["conditioner"], 20, source=dataset)
    images = draw_samples(module, condition, 20, ClassifierFreeGuidance(3.0), batch_size=8,
                          sampler=DDIMSampler(steps=3))
    samplers = sampler_grid(DDIMSampler(steps=3), None, module.schedule.num_timesteps)
    return images, grid_sweep(module, evaluator, condition, ClassifierFreeGuidance(), SCALES, 20,
                              samplers=samplers, batch_size=8)


def _sweep_on_rank(rank: int, world: int, tmp: str, *paths: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    images, rows = _sweep(*map(Path, paths), Path(tmp))
    try:
        on_rank_zero(partial(check_settings, [], 1, 1))
    except Exception as err:  # rank 0: the FieldError itself; rank 1: told about it, not left waiting
        error = f"{type(err).__name__}: {err}"
    torch.save({"images": images, "rows": rows, "error": error}, f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_rank_sweep_equals_the_single_process_sweep(ldm_ckpt, classifier_ckpt, fmnist_dir, tmp_path):
    paths = (str(ldm_ckpt), str(classifier_ckpt), str(fmnist_dir))
    mp.start_processes(_sweep_on_rank, args=(2, str(tmp_path), *paths), nprocs=2, start_method="fork")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))

    images, rows = _sweep(ldm_ckpt, classifier_ckpt, fmnist_dir, tmp_path / "single")
    # rank 0 drew chunks 0 and 2, rank 1 chunk 1; rank 0 holds all of them, in order
    assert rank1["images"] is None and torch.equal(rank0["images"], images)

    def untimed(rows):
        return [{k: v for k, v in r.items() if not is_timing(k)} for r in rows]

    assert untimed(rank0["rows"]) == untimed(rank1["rows"]) == untimed(rows)
    assert rank0["error"].startswith("FieldError: guidance_scales")  # a ConfigError about the sweep's field
    assert rank1["error"].startswith("RuntimeError: rank 0 failed") and "guidance_scales" in rank1["error"]
