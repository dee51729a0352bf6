"""`make sweep` + `make report`: a real 2-seed multirun with the in-run guidance sweep,
aggregated into one table and one frontier (by the Hydra callback and by the CLI); the
aggregation maths on hand-made jobs."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml

from ldmlab.commands.report import report
from ldmlab.evaluation.aggregate import write_report
from ldmlab.evaluation.compare import write_comparison
from ldmlab.evaluation.table import read_csv, write_csv
from ldmlab.utils.errors import ConfigError
from tests.conftest import TINY_LDM, compose_config, run_cli
from tests.unit.models.test_classifier import tiny_classifier_ckpt

TINY_SWEEP = [
    "metrics.inception=false", "metrics.kid_subset_size=16", "metrics.kid_subsets=10", "sampler.steps=3",
    "callbacks.guidance_sweep.guidance_scales=[1,3]", "callbacks.guidance_sweep.num_samples=20",
    "callbacks.guidance_sweep.num_reference=40", "callbacks.guidance_sweep.batch_size=10",
]


def fake_job(sweep_dir, name, p_uncond, seed, fids, epoch=1):
    job = sweep_dir / name
    (job / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "conditioner": {"p_uncond": p_uncond}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"guidance_scale": s, "w": s - 1, "fid_x": fid, "is_x": 10 - fid}
            for s, fid in zip((1.0, 3.0), fids, strict=True)]
    write_csv([{**r, "fid_x": 999.0} for r in rows], job / "guidance_sweep" / "sweep_epoch000.csv")  # older
    write_csv(rows, job / "guidance_sweep" / f"sweep_epoch{epoch:03d}.csv")


def test_report_averages_seeds_per_p_uncond_and_scale(tmp_path):
    fake_job(tmp_path, "0", 0.1, 1, [4.0, 3.0])
    fake_job(tmp_path, "1", 0.1, 2, [6.0, 5.0], epoch=10)
    fake_job(tmp_path, "2", 0.5, 1, [8.0, 2.0])
    (tmp_path / "3" / ".hydra").mkdir(parents=True)  # a job that never swept: left out
    (tmp_path / "3" / ".hydra" / "config.yaml").write_text("seed: 3\n")
    paths = write_report(tmp_path, ["conditioner.p_uncond"])
    rows = read_csv(paths["csv"])
    assert [(r["p_uncond"], r["guidance_scale"], r["seeds"]) for r in rows] == \
           [(0.1, 1.0, 2), (0.1, 3.0, 2), (0.5, 1.0, 1), (0.5, 3.0, 1)]
    assert rows[0]["fid_x"] == 5.0 and rows[0]["fid_x_seed_std"] == pytest.approx(statistics.stdev([4, 6]))
    assert "fid_x_seed_std" not in rows[2]  # one seed: no spread
    markdown = paths["markdown"].read_text()
    assert "| 0.1 | 1 | 0 | 2 | 5 ± 1.4 | 5 ± 1.4 |" in markdown and "| 0.5 | 3 | 2 | 1 | 2 | 8 |" in markdown
    assert paths["frontier"].stat().st_size > 10_000
    with pytest.raises(ConfigError, match="^sweep_dir: .*nope"):
        report(compose_config("report", [f"sweep_dir={tmp_path / 'nope'}"]))
    fake_job(tmp_path, "4", 0.5, 1, [1.0, 1.0])  # same p_uncond and seed as job 2: something else varied
    with pytest.raises(ConfigError, match="group_by"):
        write_report(tmp_path, ["conditioner.p_uncond"])


def test_report_never_replaces_a_file_it_did_not_write(tmp_path, monkeypatch):
    """A report.md of the user's in the sweep dir: refused before anything is written (its fix,
    ``out=<a free folder>``, works); ldmlab's own report is replaced on the next run, unless edited."""
    fake_job(tmp_path, "0", 0.1, 1, [4.0, 3.0])
    (tmp_path / "report.md").write_text("my notes")
    with pytest.raises(ConfigError, match="^out: .*report.md, which ldmlab did not write") as refused:
        report(compose_config("report", [f"sweep_dir={tmp_path}"]))
    assert (tmp_path / "report.md").read_text() == "my notes" and not (tmp_path / "report.csv").exists()
    assert refused.value.fix == f"out={tmp_path / 'report'}"
    paths = report(compose_config("report", [f"sweep_dir={tmp_path}", refused.value.fix]))
    assert paths["markdown"] == tmp_path / "report" / "report.md" and paths["frontier"].is_file()
    (tmp_path / "report.md").unlink()
    with monkeypatch.context() as patch:  # a report that fails half-way still records what it wrote
        patch.setattr("ldmlab.evaluation.aggregate.plot_frontier", lambda *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            write_report(tmp_path, ["conditioner.p_uncond"])
    write_report(tmp_path, ["conditioner.p_uncond"])
    write_report(tmp_path, ["conditioner.p_uncond"])  # its own files: replaced
    (tmp_path / "report.csv").write_text("edited by hand")
    with pytest.raises(ConfigError, match="report.csv, which ldmlab did not write"):
        write_report(tmp_path, ["conditioner.p_uncond"])
    assert (tmp_path / "report.csv").read_text() == "edited by hand"


def test_report_averages_training_and_sampling_seeds_per_grid_point(tmp_path):
    """2 training seeds × 2 sampling seeds per (steps, s) cell: mean ± std over the 4 rows."""
    fids = {}
    for name, train_seed in (("0", 1), ("1", 2)):
        job = tmp_path / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
            {"seed": train_seed, "conditioner": {"p_uncond": 0.1}}))
        rows = []
        for steps in (10, 50):
            for seed in (0, 1):
                fid = 20.0 / steps + train_seed + 0.5 * seed
                fids.setdefault(steps, []).append(fid)
                rows.append({"guidance": "cfg", "guidance_scale": 3.0, "w": 2.0, "sampler": "ddim",
                             "sampler.steps": steps, "seed": seed, "fid_x": fid, "is_x": 5.0,
                             "seconds_per_image": steps / 100})
        write_csv(rows, job / "guidance_sweep" / "sweep_epoch001_per_seed.csv")
        write_csv([{**r, "fid_x": 999.0} for r in rows[::2]], job / "guidance_sweep" / "sweep_epoch001.csv")
    paths = write_report(tmp_path, ["conditioner.p_uncond"])
    rows = read_csv(paths["csv"])
    assert [(r["sampler.steps"], r["seeds"]) for r in rows] == [(10, 4), (50, 4)]
    for row in rows:  # hand computation over the per-seed rows, not the per-job means
        assert row["fid_x"] == pytest.approx(statistics.fmean(fids[row["sampler.steps"]]))
        assert row["fid_x_seed_std"] == pytest.approx(statistics.stdev(fids[row["sampler.steps"]]))
    # 10 steps: 2 + {1, 1.5, 2, 2.5} → mean 3.75, std sqrt(0.41667) = 0.6455
    assert rows[0]["fid_x"] == pytest.approx(3.75)
    assert rows[0]["fid_x_seed_std"] == pytest.approx(0.645497, 1e-5)
    markdown = paths["markdown"].read_text()
    assert "| p_uncond | steps | s | w | seeds | fid_x | is_x | seconds_per_image |" in markdown
    assert "| 0.1 | 10 | 3 | 2 | 4 | 3.75 ± 0.65 | 5 ± 0 | 0.1 ± 0 |" in markdown
    assert paths["grid"].stat().st_size > 10_000 and paths["frontier"].stat().st_size > 10_000


def test_seeds_multirun_then_report(tiny_ae_ckpt, fmnist_dir, tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 busy cores: no OpenMP spin-waits in the children
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    args = ["experiment=cfg_sweep_fmnist", "conditioner.p_uncond=0.5", "seed=1,2",
            f"first_stage.ckpt={tiny_ae_ckpt}",
            f"metrics.classifier_ckpt={classifier}", f"metrics.cache_root={tmp_path / 'cache'}",
            "logger=none", *TINY_LDM, *TINY_SWEEP]
    out = run_cli("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "train_ldm" / "multiruns").iterdir()
    for job in ("0", "1"):
        assert (sweep_dir / job / "guidance_sweep" / "sweep_epoch000.png").is_file()

    report = read_csv(sweep_dir / "report.csv")  # written by the Hydra callback at the end of the multirun
    assert [(r["p_uncond"], r["guidance_scale"], r["seeds"]) for r in report] == [(0.5, 1, 2), (0.5, 3, 2)]
    jobs = [read_csv(sweep_dir / job / "guidance_sweep" / "sweep_epoch000.csv") for job in ("0", "1")]
    for index, row in enumerate(report):  # mean ± std over the two training seeds' rows
        fids = [job[index]["fid_classifier"] for job in jobs]
        assert row["fid_classifier"] == pytest.approx(statistics.fmean(fids))
        assert row["fid_classifier_seed_std"] == pytest.approx(statistics.stdev(fids)) and fids[0] != fids[1]
    assert (sweep_dir / "frontier.png").is_file()
    for name in ("report.csv", "report.md", "frontier.png"):
        (sweep_dir / name).unlink()
    out = run_cli("ldmlab.commands.report", [], tmp_path)  # default: the newest multirun
    assert out.returncode == 0, out.stderr[-3000:]
    markdown = (sweep_dir / "report.md").read_text()
    columns = ["p_uncond", "s", "w", "seeds", "fid_classifier", "kid_classifier", "is_classifier",
               "accuracy_classifier", "seconds_per_image"]
    provenance, table = markdown.split("\n\n", 1)  # the provenance line, then the table
    assert provenance.startswith("N = 20 samples vs 40 references (") and "; ldmlab " in provenance
    assert table.startswith("| " + " | ".join(columns) + " |\n") and table.count("\n") == 4
    assert markdown.count(" ± ") >= 2 * 5
    assert (sweep_dir / "frontier.png").is_file()


def evaluate_run(root, name, guidance, model, rows):
    run = root / name
    run.mkdir(parents=True)
    summary = {"task": "evaluate", "checkpoint": f"/logs/train_ldm/runs/{model}/checkpoints/last.ckpt",
               "guidance": {"name": guidance}, "rows": rows}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_report_puts_evaluate_runs_of_different_guidance_on_one_frontier(tmp_path):
    cfg_rows = [{"guidance": "cfg", "guidance_scale": s, "w": s - 1, "fid_x": f, "is_x": i}
                for s, f, i in ((1, 9.0, 3.0), (3, 6.0, 5.0))]
    clf_rows = [{"guidance": "classifier", "guidance_scale": s, "fid_x": f, "is_x": i}
                for s, f, i in ((0, 12.0, 2.5), (4, 8.0, 4.0))]
    runs = [evaluate_run(tmp_path, "a", "cfg", "cond", cfg_rows), evaluate_run(tmp_path, "b", "classifier",
                                                                                "uncond", clf_rows)]
    cfg = compose_config("report", [f"evaluate_runs=[{runs[0]},{runs[1]}]"])
    out_dir = tmp_path / "report"
    paths = write_comparison([runs[0], runs[1]], out_dir)
    rows = read_csv(paths["csv"])
    assert [(r["run"], r["guidance_scale"], r["fid_x"]) for r in rows] == [
        ("cfg · cond", 1, 9.0), ("cfg · cond", 3, 6.0), ("classifier · uncond", 0, 12.0),
        ("classifier · uncond", 4, 8.0)]
    assert paths["markdown"].read_text().startswith(  # rows without provenance: stated as unknown
        "N = unknown samples vs unknown references (unknown), features unknown; NFE unknown; "
        "ldmlab unknown\n\n| run | guidance | s | seeds | fid_x | is_x |")
    assert paths["frontier"].stat().st_size > 10_000
    assert list(cfg.evaluate_runs) == [str(runs[0]), str(runs[1])]
    with pytest.raises(ConfigError, match="labels"):
        write_comparison(runs, out_dir, labels=["only one"])
    with pytest.raises(ConfigError, match="evaluate_runs"):
        write_comparison([tmp_path / "missing"], out_dir)
