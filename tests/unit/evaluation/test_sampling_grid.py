"""The sweep grid without a model: sampler axes, their input checks, seeds as an axis (mean ± std
against a hand computation) and the files of one sweep (one CSV row per grid point, a plot)."""

from __future__ import annotations

import statistics

import pytest

from ldmlab.config.conf_dir import group_options, option_of
from ldmlab.evaluation.grid import sampler_grid, settings_of
from ldmlab.evaluation.seeds import mean_over_seeds
from ldmlab.evaluation.sweep import check_seeds, check_settings
from ldmlab.evaluation.sweep_files import plot_axis, write_sweep
from ldmlab.evaluation.table import read_csv
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.sampling.samplers.ddpm import DDPMSampler
from ldmlab.sampling.samplers.dpmpp_2m import DPMPP2MSampler
from ldmlab.utils.errors import ConfigError, part_keys
from tests.conftest import compose_config


def test_grid_is_the_product_of_its_axes_in_order():
    points = sampler_grid(DDIMSampler(steps=50), {"steps": [10, 250], "eta": [0.0, 0.5, 1.0]}, 1000)
    assert [p for p, _ in points] == [{"sampler": "ddim", "sampler.steps": s, "sampler.eta": e}
                                      for s in (10, 250) for e in (0.0, 0.5, 1.0)]
    assert [(s.steps, s.eta, s.spacing) for _, s in points] == [
        (s, e, "trailing") for s in (10, 250) for e in (0.0, 0.5, 1.0)]
    assert len(points[1][1].timesteps(1000)) == 10


def test_sampler_axis_takes_each_options_defaults_and_the_swept_steps():
    points = sampler_grid(DDIMSampler(steps=7), {"sampler": ["ddpm", "dpmpp"], "steps": [100]}, 1000)
    (ddpm_point, ddpm), (dpm_point, dpm) = points
    assert isinstance(ddpm, DDPMSampler) and isinstance(dpm, DPMPP2MSampler)
    assert ddpm_point == {"sampler": "ddpm", "sampler.steps": 100} and ddpm.variance == "fixed_small"
    assert dpm.steps == 100
    # no sampler axis: the base sampler with its own settings, labelled by its conf/sampler name
    (point, same), = sampler_grid(DDIMSampler(steps=7, eta=0.3), {"sampler": None}, 1000)
    assert point == {"sampler": "ddim", "sampler.steps": 7} and settings_of(same) == settings_of(
        DDIMSampler(steps=7, eta=0.3))
    (point, _), = sampler_grid(DDIMSampler(), {"eta": 1}, 1000)  # a scalar is one value
    assert point["sampler.eta"] == 1


@pytest.mark.parametrize(("grid", "key", "fix"), [
    ({"steps": [10, 2000]}, "grid.steps", "grid.steps=1000"),
    ({"steps": []}, "grid.steps", "grid.steps=[10,50]"),
    ({"foo": [1]}, "grid.foo", "drop grid.foo"),
    ({"sampler": ["dpmpp"], "eta": [0]}, "grid.eta", "sweep one of ['spacing', 'steps']"),
    ({"sampler": ["plms"]}, "grid.sampler", "['ddim', 'ddpm', 'dpmpp', 'edm', 'euler', 'heun', 'sde']"),
    ({"eta": [-1]}, "grid.eta", "grid.eta=0"),
])
def test_bad_grids_name_the_swept_key_and_a_fix(grid, key, fix):
    with pytest.raises(ConfigError) as info:
        sampler_grid(DDIMSampler(), grid, 1000)
    assert info.value.key == key and fix in info.value.fix


@pytest.mark.parametrize("seeds", [[], [0, 0], [-1], [1.5], [True], [4294]])
def test_bad_seeds_are_refused(seeds):
    with pytest.raises(ConfigError, match=r"^callbacks\.x\.seeds: "), part_keys(sweep="callbacks.x"):
        check_seeds(seeds)


TOY = [  # two grid points (steps 10, 50) × three seeds, one with a missing KID
    {"guidance": "cfg", "guidance_scale": 3.0, "w": 2.0, "sampler": "ddim", "sampler.steps": 10, "seed": 0,
     "fid_x": 10.0, "kid_x": 1.0, "seconds_per_image": 0.1},
    {"guidance": "cfg", "guidance_scale": 3.0, "w": 2.0, "sampler": "ddim", "sampler.steps": 10, "seed": 1,
     "fid_x": 12.0, "kid_x": 3.0, "seconds_per_image": 0.3},
    {"guidance": "cfg", "guidance_scale": 3.0, "w": 2.0, "sampler": "ddim", "sampler.steps": 10, "seed": 2,
     "fid_x": 17.0, "seconds_per_image": 0.2},
    {"guidance": "cfg", "guidance_scale": 3.0, "w": 2.0, "sampler": "ddim", "sampler.steps": 50, "seed": 0,
     "fid_x": 5.0, "kid_x": 0.5, "seconds_per_image": 1.0},
    {"guidance": "cfg", "guidance_scale": 3.0, "w": 2.0, "sampler": "ddim", "sampler.steps": 50, "seed": 1,
     "fid_x": 7.0, "kid_x": 0.7, "seconds_per_image": 1.2},
    {"guidance": "cfg", "guidance_scale": 3.0, "w": 2.0, "sampler": "ddim", "sampler.steps": 50, "seed": 2,
     "fid_x": 6.0, "kid_x": 0.6, "seconds_per_image": 1.1},
]


def test_mean_over_seeds_equals_a_hand_computation():
    ten, fifty = mean_over_seeds(TOY)
    assert ten["sampler.steps"] == 10 and ten["seeds"] == 3 and "seed" not in ten
    assert ten["fid_x"] == pytest.approx(13.0)
    # sample standard deviation, n − 1 = 2: deviations −3, −1, 4 → sqrt(26 / 2)
    assert ten["fid_x_seed_std"] == pytest.approx(13 ** 0.5)
    assert ten["kid_x"] == pytest.approx(2.0) and ten["kid_x_seed_std"] == pytest.approx(2 ** 0.5)
    assert fifty["fid_x"] == pytest.approx(6.0) and fifty["fid_x_seed_std"] == pytest.approx(1.0)
    assert fifty["seconds_per_image"] == pytest.approx(1.1)
    one, = mean_over_seeds(TOY[:1])
    assert one["seeds"] == 1 and "fid_x_seed_std" not in one


def test_sweep_files_have_one_row_per_grid_point_and_a_grid_plot(tmp_path):
    cells, files = write_sweep(TOY, tmp_path / "sweep", "toy")
    rows = read_csv(files["csv"])
    assert [(r["sampler.steps"], r["seeds"]) for r in rows] == [(10, 3), (50, 3)]
    assert rows[0]["fid_x_seed_std"] == pytest.approx(statistics.stdev([10, 12, 17]))
    assert len(read_csv(files["per_seed_csv"])) == 6
    assert plot_axis(cells) == "sampler.steps" and files["plot"].stat().st_size > 10_000
    # one seed, only the scale varies: no per-seed file, the scale plot with its frontier
    _, files = write_sweep([dict(TOY[0], is_x=2.0), dict(TOY[0], guidance_scale=1.0, w=0.0, is_x=1.5)],
                           tmp_path / "scales", "toy")
    assert "per_seed_csv" not in files and files["plot"].stat().st_size > 10_000


CONTINUOUS_ONLY = ("edm", "euler", "heun", "sde")  # samplers of the continuous processes (flow, EDM)


@pytest.mark.parametrize("sampler", group_options("sampler"))
def test_every_sampler_option_is_a_grid_value(sampler):
    """On a discrete schedule (T = 1000) and, for every sampler, on a continuous process (T = None);
    a continuous process's sampler on a discrete schedule is refused naming the swept key."""
    for num_timesteps in (1000, None) if sampler not in CONTINUOUS_ONLY else (None,):
        (point, built), = sampler_grid(DDIMSampler(), {"sampler": [sampler], "steps": [10]}, num_timesteps)
        assert point == {"sampler": sampler, "sampler.steps": 10} and built.steps == 10
        assert option_of("sampler", built) == sampler
    if sampler in CONTINUOUS_ONLY:
        with pytest.raises(ConfigError, match=r"integrates a continuous-time process.*Fix: use sampler=ddim"):
            sampler_grid(DDIMSampler(), {"sampler": [sampler]}, 1000)


def test_grids_and_seeds_compose_for_evaluate_and_the_in_run_sweep():
    cfg = compose_config("evaluate", ["grid.steps=[10,50]", "grid.eta=[0,1]", "seeds=[0,1,2]"])
    assert cfg.grid.steps == [10, 50] and cfg.grid.sampler is None and list(cfg.seeds) == [0, 1, 2]
    cfg = compose_config("train_ldm", ["callbacks=ldm_sweep", "callbacks.guidance_sweep.seeds=[0,1]",
                                       "callbacks.guidance_sweep.grid.sampler=[ddim,dpmpp]"])
    node = cfg.callbacks.guidance_sweep
    with part_keys(sweep="callbacks.guidance_sweep"):
        points = sampler_grid(DDIMSampler(), node.grid, 1000)
    assert [p["sampler"] for p, _ in points] == ["ddim", "dpmpp"] and list(node.seeds) == [0, 1]


def test_more_images_than_one_seed_names_is_refused_with_a_fix():
    with pytest.raises(ConfigError) as info, part_keys(sweep=""):
        check_settings([1.0], 10**6 + 1, 64)
    assert info.value.key == "num_samples" and "num_samples=1000000 and more seeds" in info.value.fix
    assert check_settings([1.0], 10**6, 64) == [1.0]
