"""Guidance settings as sweep axes without a model: the product of interval bounds, the point
columns, one row per guidance point in ``grid_sweep`` and in the in-run callback (a stub module
and evaluator), the columns that group those rows, and every refusal's key and fix."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

import ldmlab
from ldmlab.callbacks.guidance_sweep import GuidanceSweep
from ldmlab.evaluation.columns import is_axis, varying_axes
from ldmlab.evaluation.guidance_grid import guidance_grid
from ldmlab.evaluation.seeds import mean_over_seeds
from ldmlab.evaluation.sweep import grid_sweep
from ldmlab.evaluation.sweep_files import plot_axis, write_sweep
from ldmlab.evaluation.table import read_csv
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.guidance.interval import IntervalGuidance
from ldmlab.utils.errors import ConfigError, part_keys
from tests.conftest import compose_config


def interval(low: float = 0.28, high: float = 5.42, scale: float = 3.0) -> IntervalGuidance:
    return IntervalGuidance(ClassifierFreeGuidance(scale), sigma_low=low, sigma_high=high)


def test_grid_is_the_product_of_the_settings_in_order():
    points = guidance_grid(interval(), {"sigma_low": [0.0, 0.3], "sigma_high": [2, 5, 10]})
    assert [p for p, _ in points] == [{"guidance.sigma_low": low, "guidance.sigma_high": high}
                                      for low in (0.0, 0.3) for high in (2, 5, 10)]
    assert [(g.sigma_low, g.sigma_high, g.scale) for _, g in points] == [
        (low, float(high), 3.0) for low in (0.0, 0.3) for high in (2, 5, 10)]
    assert all(isinstance(g, IntervalGuidance) for _, g in points)


def test_no_axes_is_the_guidance_itself_and_one_value_is_a_one_value_list():
    base = interval()
    for axes in (None, {}, {"sigma_high": None}):
        assert guidance_grid(base, axes) == [({}, base)]
    (point, moved), = guidance_grid(base, {"sigma_high": 7})
    assert point == {"guidance.sigma_high": 7} and (moved.sigma_low, moved.sigma_high) == (0.28, 7.0)
    (point, _), = guidance_grid(base, OmegaConf.create({"sigma_low": [0.5]}))  # as Hydra passes it
    assert point == {"guidance.sigma_low": 0.5}
    assert (base.sigma_low, base.sigma_high) == (0.28, 5.42)  # the configured guidance is left as it was


@pytest.mark.parametrize(("guidance", "axes", "message"), [
    (ClassifierFreeGuidance(2.0), {"sigma_high": [1]},
     "grid.guidance.sigma_high: the cfg guidance has no settings to sweep. "
     "Fix: use guidance=interval (sigma_low, sigma_high) or drop grid.guidance.sigma_high"),
    (interval(), {"foo": [1]},
     "grid.guidance.foo: is not a setting of interval guidance. "
     "Fix: sweep grid.guidance.sigma_low or grid.guidance.sigma_high"),
    (interval(), {"sigma_high": [5, 0.1]},
     "grid.guidance.sigma_high: must be a number ≥ sigma_low = 0.28, got 0.1. "
     "Fix: e.g. grid.guidance.sigma_high=5.42"),
    (interval(), {"sigma_low": [-1]},
     "grid.guidance.sigma_low: must be a finite number ≥ 0, got -1. Fix: e.g. grid.guidance.sigma_low=0.28"),
    (interval(), {"sigma_low": [0, 10]},
     "grid.guidance.sigma_low: sigma_low=10 leaves the configured guidance.sigma_high invalid "
     "(must be a number ≥ sigma_low = 10, got 5.42). "
     "Fix: sweep values that fit guidance.sigma_high=5.42, or change guidance.sigma_high"),
    (interval(), {"sigma_high": []},
     "grid.guidance.sigma_high: must be a non-empty list, got []. "
     "Fix: e.g. +grid.guidance.sigma_high=[2,5,10]"),
    (interval(), 3,
     "grid.guidance: must map guidance settings to values, got 3. "
     "Fix: e.g. grid.guidance={} or +grid.guidance.sigma_high=[2,5,10]"),
])
def test_refusals_name_the_swept_key_and_a_fix(guidance, axes, message):
    with pytest.raises(ConfigError) as info, part_keys(sweep=""):
        guidance_grid(guidance, axes)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_in_training_the_keys_are_the_callbacks():
    with pytest.raises(ConfigError) as info, part_keys(sweep="callbacks.guidance_sweep",
                                                       guidance="callbacks.guidance_sweep.guidance"):
        guidance_grid(ClassifierFreeGuidance(), {"sigma_low": [0]})
    assert info.value.key == "callbacks.guidance_sweep.grid.guidance.sigma_low"
    assert "use guidance@callbacks.guidance_sweep.guidance=interval" in info.value.fix


class StubModule:
    """Just what ``grid_sweep`` calls: each image is filled with the bound guidance's sigma_high."""

    device = torch.device("cpu")
    sampler = None

    def prepare_guidance(self, guidance, use_ema):
        return guidance

    def generate(self, condition, num_samples, guidance, sampler, generator, use_ema):
        return torch.full((num_samples, 1, 2, 2), guidance.sigma_high * 0.2 - 1)


class MeanPixel:
    """A stand-in evaluator: the mean uint8 pixel value of the drawn images (features: each
    image's mean pixel)."""

    def features(self, images):
        return {"mean/pixel": images.float().mean(dim=(1, 2, 3))[:, None]}

    def score(self, features, labels):
        return {"fid_mean": round(features["mean/pixel"].mean().item(), 3)}

    def provenance(self):
        return {"num_reference": 7, "reference": "stub", "feature_networks": "mean:pixel"}


def test_grid_sweep_rows_carry_the_guidance_point_outermost(tmp_path):
    guidances = guidance_grid(interval(), {"sigma_high": [2, 10]})
    samplers = [({"sampler": "ddim", "sampler.steps": steps}, None) for steps in (3, 5)]
    rows = grid_sweep(StubModule(), MeanPixel(), {}, interval(), [1.0, 3.0], 4, samplers=samplers,
                      seeds=[0, 1], batch_size=4, guidances=guidances)
    assert [(r["guidance.sigma_high"], r["sampler.steps"], r["guidance_scale"], r["seed"]) for r in rows] == [
        (high, steps, s, seed) for high in (2, 10) for steps in (3, 5) for s in (1.0, 3.0) for seed in (0, 1)]
    # the images follow the point's guidance: σ_high · 0.2 − 1 in [-1, 1] is σ_high · 25.5 in uint8
    assert {(r["guidance.sigma_high"], r["fid_mean"]) for r in rows} == {(2, 51.0), (10, 255.0)}
    assert all(r["w"] == r["guidance_scale"] - 1 and r["guidance"] == "interval" for r in rows)
    cells = mean_over_seeds(rows)  # the guidance point is an axis: cells keep it apart
    assert len(cells) == 8 and all(c["seeds"] == 2 for c in cells)
    assert is_axis("guidance.sigma_high") and not is_axis("guidance_scale_std")
    assert varying_axes(cells) == ["guidance_scale", "w", "guidance.sigma_high", "sampler.steps"]
    _, files = write_sweep(rows, tmp_path / "sweep", "interval")
    assert [r["guidance.sigma_high"] for r in read_csv(files["csv"])] == [2] * 4 + [10] * 4
    assert files["plot"].stat().st_size > 10_000


def test_the_plot_runs_along_a_guidance_setting_only_when_no_sampler_setting_or_scale_varies():
    def cell(s, high, steps=3):
        return {"guidance_scale": s, "guidance.sigma_high": high, "sampler.steps": steps, "fid_x": 1.0}
    assert plot_axis([cell(3.0, 2), cell(3.0, 10)]) == "guidance.sigma_high"
    assert plot_axis([cell(1.0, 2), cell(3.0, 10)]) == "guidance_scale"
    assert plot_axis([cell(3.0, 2, 3), cell(3.0, 10, 5)]) == "sampler.steps"


def test_without_guidances_grid_sweep_keeps_its_columns():
    samplers = [({"sampler": "ddim"}, None)]
    row, = grid_sweep(StubModule(), MeanPixel(), {}, interval(high=4), [2.0], 4, samplers=samplers,
                      batch_size=4)
    assert row == {"guidance": "interval", "guidance_scale": 2.0, "w": 1.0, "sampler": "ddim", "seed": 0,
                   "fid_mean": 102.0, "num_samples": 4, "num_reference": 7, "reference": "stub",
                   "feature_networks": "mean:pixel", "nfe": 0, "ldmlab_version": ldmlab.__version__,
                   **{k: row[k] for k in ("sampling_seconds", "seconds_per_image", "feature_seconds",
                                          "metric_seconds")}}  # nfe: the stub calls no denoiser


def test_the_callback_sweeps_the_guidance_point_and_logs_it(tmp_path):
    sweep = GuidanceSweep([3.0], num_samples=4, metrics=None, out_dir=str(tmp_path), batch_size=4,
                          guidance=interval(), grid={"guidance": {"sigma_high": [2, 10]}, "steps": None})
    sweep.evaluator, sweep.samplers = MeanPixel(), [({"sampler": "ddim"}, None)]  # what setup builds
    logged = {}
    module = StubModule()
    module.log = lambda key, value, sync_dist: logged.__setitem__(key, value)
    trainer = SimpleNamespace(current_epoch=0, sanity_checking=False, max_epochs=1, max_steps=-1,
                              should_stop=False, global_step=0, is_global_zero=True, loggers=[])
    sweep.on_validation_epoch_end(trainer, module)
    assert logged["sweep/fid_mean@s=3,sigma_high=2,n=4"] == 51.0
    assert logged["sweep/fid_mean@s=3,sigma_high=10,n=4"] == 255.0
    assert json.loads((tmp_path / "best.json").read_text())["guidance.sigma_high"] == 2


def test_the_callback_refuses_a_guidance_without_settings_with_a_working_fix():
    with pytest.raises(ConfigError) as info:
        GuidanceSweep([3.0], num_samples=4, metrics=None, out_dir="unused",
                      grid={"guidance": {"sigma_high": [1]}})
    assert info.value.key == "callbacks.guidance_sweep.grid.guidance.sigma_high"
    fix = "guidance@callbacks.guidance_sweep.guidance=interval"
    assert f"use {fix} " in info.value.fix
    cfg = compose_config("train_ldm", ["callbacks=ldm_sweep", fix,
                                       "+callbacks.guidance_sweep.grid.guidance.sigma_high=[1]"])
    node = cfg.callbacks.guidance_sweep
    assert node.guidance._target_.endswith("IntervalGuidance") and list(node.grid.guidance.sigma_high) == [1]
