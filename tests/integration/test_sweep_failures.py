"""One failed job does not end a sweep, and the report reads run dirs as data.

A multirun records each job's status, runs the rest, reports what completed (listing the failed
jobs and why) and exits 2 at the end with one line naming them (1 when a job hit a bug). The
report never resolves an interpolation found in a run dir, and refuses malformed files
(``summary.json``, a job's YAML, a sweep CSV) in one line before writing anything.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

import ldmlab.commands.report
from ldmlab.evaluation.aggregate import write_report
from ldmlab.evaluation.compare import write_comparison
from ldmlab.utils.errors import ConfigError
from tests.conftest import TINY_AE, TINY_LDM, run_cli, run_forked
from tests.integration.test_sweep_report import TINY_SWEEP, evaluate_run, fake_job
from tests.unit.models.test_classifier import tiny_classifier_ckpt

REPORT_FILES = ("report.csv", "report.md", "frontier.png", "compare.csv", "compare.md")


def one_error_line(out, prefix: str) -> str:
    """The one ``error:`` line, last on stderr (progress notes of a sweep may come before it)."""
    lines = out.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and lines[-1].startswith(prefix), out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    return lines[-1]


def statuses(sweep_dir) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/job_status.json")}


def test_a_diverged_job_does_not_end_the_sweep(tiny_ae_ckpt, fmnist_dir, tmp_path_factory, tmp_path):
    """`make sweep` with module.optimizer.lr=1e30,8e-4: job 0 diverges, job 1 still trains and
    sweeps, the report (by the sweep's Hydra callback) holds job 1 and lists job 0 with its
    reason, and the command ends with one line naming job 0, exit 2."""
    classifier = tiny_classifier_ckpt(fmnist_dir, tmp_path_factory)
    args = ["hydra.mode=MULTIRUN", "experiment=cfg_sweep_fmnist", "conditioner.p_uncond=0.5", "seed=1",
            "module.optimizer.lr=1e30,8e-4", f"first_stage.ckpt={tiny_ae_ckpt}",
            f"metrics.classifier_ckpt={classifier}", f"metrics.cache_root={tmp_path / 'cache'}",
            "logger=none", *TINY_LDM, *TINY_SWEEP]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    (sweep_dir,) = (tmp_path / "train_ldm" / "multiruns").iterdir()
    line = one_error_line(out, "error: multirun: 1 of 2 jobs failed: #0 (module.optimizer.lr=1e+30): "
                               "diverged: module.optimizer.lr: training diverged")
    assert out.returncode == 2 and line.endswith(f"; see {sweep_dir / 'report.md'}")
    jobs = statuses(sweep_dir)
    assert jobs["0"]["status"] == "diverged" and jobs["1"]["status"] == "completed"
    assert json.loads((sweep_dir / "0" / "summary.json").read_text())["status"] == "diverged"
    assert (sweep_dir / "1" / "guidance_sweep" / "sweep_epoch000.csv").is_file()  # job 1 ran
    report = (sweep_dir / "report.md").read_text()
    assert "| 0.5 | 1 | 0 | 1 |" in report  # job 1's row: p_uncond 0.5, s = 1, w = 0, 1 seed
    assert f"- #0 (module.optimizer.lr=1e+30): diverged: {jobs['0']['reason']}" in report
    assert "status" in (sweep_dir / "jobs.csv").read_text().splitlines()[0]


def test_report_multirun_goes_on_after_bad_input_and_a_bug(tmp_path, monkeypatch):
    """Any entry point's multirun (here `report -m`): a job's bad input is recorded with its one
    line, a bug with its type and the traceback in the job's log; the other jobs still run."""
    fake_job(tmp_path / "good", "0", 0.1, 1, [4.0, 3.0])
    (tmp_path / "bad" / "0" / ".hydra").mkdir(parents=True)
    fake_job(tmp_path / "crash", "0", 0.1, 1, [4.0, 3.0])
    write_report = ldmlab.commands.report.write_report

    def crashing(sweep_dir, *args):
        if sweep_dir.name == "crash":
            raise ZeroDivisionError("a bug")
        return write_report(sweep_dir, *args)

    sweep = ["hydra.mode=MULTIRUN", f"sweep_dir={tmp_path / 'good'},{tmp_path / 'bad'}"]  # = -m
    out = run_forked("ldmlab.commands.report", sweep, tmp_path)
    (sweep_dir,) = (tmp_path / "report" / "multiruns").iterdir()
    line = one_error_line(out, f"error: multirun: 1 of 2 jobs failed: #1 (sweep_dir={tmp_path / 'bad'}): "
                               "bad input: sweep_dir: no completed job under")
    assert out.returncode == 2 and line.endswith(f"see {sweep_dir / 'jobs.csv'}")
    assert (tmp_path / "good" / "report.md").is_file() and not (tmp_path / "bad" / "report.md").exists()
    jobs = statuses(sweep_dir)  # the job that failed before any work left its record too
    assert jobs["0"]["status"] == "completed" and jobs["1"]["status"] == "bad input"
    assert jobs["1"]["reason"] == line.split("bad input: ", 1)[1].split("; see ")[0]

    monkeypatch.setattr(ldmlab.commands.report, "write_report", crashing)
    sweep = ["hydra.mode=MULTIRUN", f"sweep_dir={tmp_path / 'crash'},{tmp_path / 'good'}"]
    out = run_forked("ldmlab.commands.report", sweep, tmp_path / "second")
    (sweep_dir,) = (tmp_path / "second" / "report" / "multiruns").iterdir()
    assert out.returncode == 1, out.stderr[-3000:]  # a bug is not the user's input
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: multirun: 1 of 2 jobs failed: #0 (sweep_dir=") and \
        "bug: ZeroDivisionError: a bug" in last
    jobs = statuses(sweep_dir)
    assert jobs["0"]["status"] == "bug" and jobs["1"]["status"] == "completed"
    log = (sweep_dir / "0" / "report.log").read_text()
    assert "Traceback" in log and "ZeroDivisionError: a bug" in log


def test_an_optuna_sweep_whose_every_trial_failed_ends_in_one_line(tmp_path):
    """Optuna's sweeper raises (no trial completed) instead of ending the multirun: the job statuses
    are still recorded and the command ends with the one line naming the failed jobs, exit 2."""
    args = ["hydra.mode=MULTIRUN", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
            "data.num_workers=choice(-1,-2)", *TINY_AE]
    out = run_forked("ldmlab.commands.train", args, tmp_path)
    (sweep_dir,) = (tmp_path / "train_ae" / "multiruns").iterdir()
    line = one_error_line(out, "error: multirun: 2 of 2 jobs failed: #0 (")
    assert out.returncode == 2 and "bad input: data.num_workers: expected an integer ≥ 0" in line, line
    assert "the multirun then stopped: ValueError: No trials are completed yet" in line, line
    assert {job["status"] for job in statuses(sweep_dir).values()} == {"bad input"}
    assert (sweep_dir / "jobs.csv").is_file()


def test_an_optuna_sweep_without_a_metric_it_can_read_is_the_users_error(tmp_path):
    """Optuna optimises ``optimized_metric``: unset (refused before any work) or not a metric of the
    run (after it), each job is bad input naming the key, with a fix that gets past it."""
    args = ["hydra.mode=MULTIRUN", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "trainer.max_epochs=1",
            "trainer.limit_val_batches=1", *TINY_AE]
    out = run_forked("ldmlab.commands.train", args, tmp_path / "unset")
    line = one_error_line(out, "error: multirun: 1 of 1 jobs failed: #0 (")
    assert "bad input: optimized_metric: the sweeper" in line and "Fix: +optimized_metric=val/lpips;" in line
    out = run_forked("ldmlab.commands.train", [*args, "+optimized_metric=val/lpipz"], tmp_path / "typo")
    line = one_error_line(out, "error: multirun: 1 of 1 jobs failed: #0 (")
    assert "optimized_metric: val/lpipz is not a metric of the run (it has val/kl, val/lpips" in line, line
    out = run_forked("ldmlab.commands.train", [*args, "+optimized_metric=val/lpips"], tmp_path / "fixed")
    assert out.returncode == 0, out.stderr[-3000:]


def test_an_interrupted_multirun_records_its_jobs_and_keeps_its_exit_status(tmp_path, monkeypatch):
    """SIGTERM (SystemExit(143) from a job) stops the sweep as asked; was: no jobs.csv, no line."""
    fake_job(tmp_path / "good", "0", 0.1, 1, [4.0, 3.0])

    def terminated(*args):
        raise SystemExit(143)

    monkeypatch.setattr(ldmlab.commands.report, "write_report", terminated)
    out = run_forked("ldmlab.commands.report",
                     ["hydra.mode=MULTIRUN", f"sweep_dir={tmp_path / 'good'},{tmp_path}"], tmp_path / "logs")
    (sweep_dir,) = (tmp_path / "logs" / "report" / "multiruns").iterdir()
    assert out.returncode == 143, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: multirun: 1 of 1 jobs failed: #0 ("), line
    assert "interrupted: SystemExit(143)" in line, line
    assert statuses(sweep_dir)["0"]["status"] == "interrupted" and (sweep_dir / "jobs.csv").is_file()


def test_a_single_run_still_ends_at_the_first_error(tmp_path):
    out = run_forked("ldmlab.commands.report", [f"sweep_dir={tmp_path}"], tmp_path)
    one_error_line(out, "error: sweep_dir: no completed job under")
    assert out.returncode == 2 and not list(tmp_path.rglob("job_status.json"))


@pytest.mark.parametrize("where", ["group", "seed"])
def test_report_never_resolves_an_interpolation_from_a_run_dir(tmp_path, monkeypatch, where):
    """A job config holding ${oc.env:SECRET}: refused in one line naming the file and the key; the
    secret appears in no output and no file."""
    secret = "hunter2-do-not-leak"
    monkeypatch.setenv("LDMLAB_TEST_SECRET", secret)
    sweep = tmp_path / "sweep"
    fake_job(sweep, "0", 0.1, 1, [4.0, 3.0])
    config_file = sweep / "0" / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    key = {"group": "conditioner.p_uncond", "seed": "seed"}[where]
    if where == "group":
        config["conditioner"]["p_uncond"] = "${oc.env:LDMLAB_TEST_SECRET}"
    else:
        config["seed"] = "x${oc.env:LDMLAB_TEST_SECRET}"
    config_file.write_text(yaml.safe_dump(config))
    out = run_forked("ldmlab.commands.report", [f"sweep_dir={sweep}"], tmp_path / "logs")
    line = one_error_line(out, f"error: sweep_dir: {config_file} holds an interpolation at {key}")
    assert out.returncode == 2 and secret not in out.stdout + out.stderr + line
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path
    assert not any((sweep / name).exists() for name in REPORT_FILES)


def _yaml_not_yaml(sweep):
    (sweep / "0" / ".hydra" / "config.yaml").write_text("seed: [1,\n  conditioner: {")


def _yaml_a_list(sweep):
    (sweep / "0" / ".hydra" / "config.yaml").write_text("- 1\n- 2\n")


def _yaml_python_tag(sweep):
    (sweep / "0" / ".hydra" / "config.yaml").write_text("seed: !!python/object/apply:os.getcwd []\n")


def _group_is_a_mapping(sweep):
    (sweep / "0" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 1, "conditioner": {
        "p_uncond": {"a": 1}}}))


def _csv_without_columns(sweep):
    (sweep / "0" / "guidance_sweep" / "sweep_epoch001.csv").write_text("fid_x,is_x\n1.0,2.0\n")


def _csv_text_metric(sweep):
    (sweep / "0" / "guidance_sweep" / "sweep_epoch001.csv").write_text("guidance_scale,fid_x\n1.0,abc\n")


def _csv_binary(sweep):
    (sweep / "0" / "guidance_sweep" / "sweep_epoch001.csv").write_bytes(b"\xff\xfe\x00\x81garbage")


def _csv_empty(sweep):
    (sweep / "0" / "guidance_sweep" / "sweep_epoch001.csv").write_text("")


def _status_not_json(sweep):
    (sweep / "1" / "job_status.json").write_text("{not json")


SWEEP_CASES = {
    "yaml-not-yaml": (_yaml_not_yaml, "sweep_dir", "0/.hydra/config.yaml is not readable YAML"),
    "yaml-a-list": (_yaml_a_list, "sweep_dir", "0/.hydra/config.yaml holds a list"),
    "yaml-python-tag": (_yaml_python_tag, "sweep_dir", "0/.hydra/config.yaml is not readable YAML"),
    "group-a-mapping": (_group_is_a_mapping, "group_by", "conditioner.p_uncond in"),
    "csv-no-guidance-scale": (_csv_without_columns, "sweep_dir", "has no numeric guidance_scale column"),
    "csv-text-metric": (_csv_text_metric, "sweep_dir", "row 0: fid_x is 'abc', not a number"),
    "csv-binary": (_csv_binary, "sweep_dir", "sweep_epoch001.csv is unreadable"),
    "csv-empty": (_csv_empty, "sweep_dir", "sweep_epoch001.csv has no rows"),
    "status-not-json": (_status_not_json, "sweep_dir", "1/job_status.json is not a job status record"),
}


@pytest.mark.parametrize("case", SWEEP_CASES)
def test_report_refuses_a_malformed_sweep_file_before_writing(tmp_path, case):
    spoil, key, message = SWEEP_CASES[case]
    sweep = tmp_path / "sweep"
    fake_job(sweep, "0", 0.1, 1, [4.0, 3.0], epoch=1)
    fake_job(sweep, "1", 0.1, 2, [6.0, 5.0], epoch=1)
    spoil(sweep)
    if case == "yaml-not-yaml":  # through the CLI once: one line, exit 2
        out = run_forked("ldmlab.commands.report", [f"sweep_dir={sweep}"], tmp_path / "logs")
        assert out.returncode == 2 and message in one_error_line(out, f"error: {key}: {sweep}")
    with pytest.raises(ConfigError, match=f"^{key}: ") as refused:
        write_report(sweep, ["conditioner.p_uncond"])
    assert message in str(refused.value) and str(sweep) in str(refused.value)
    assert not any((sweep / name).exists() for name in REPORT_FILES)


GOOD_ROWS = [{"guidance": "cfg", "guidance_scale": 1.0, "fid_x": 9.0, "is_x": 3.0}]
EVALUATE_CASES = {  # a good summary.json → the text written instead, the problem named
    "not-json": (lambda s: "{rows: [", "is not readable JSON"),
    "a-list": (lambda s: json.dumps([s]), "holds a list, not a mapping"),
    "a-training-run": (lambda s: json.dumps({"task": "train_ldm", "status": "completed"}),
                       "task 'train_ldm'"),
    "rows-a-mapping": (lambda s: json.dumps({**s, "rows": {"a": 1}}), "rows: rows are a dict, not a list"),
    "rows-without-scale": (lambda s: json.dumps({**s, "rows": [{"fid_x": 1.0}]}),
                           "has no numeric guidance_scale column"),
    "rows-of-text": (lambda s: json.dumps({**s, "rows": ["a", "b"]}), "row 0 is a str, not a mapping"),
    "metric-a-list": (lambda s: json.dumps({**s, "rows": [{**GOOD_ROWS[0], "fid_x": [1]}]}),
                      "fid_x is '[1]', not a number"),
    "guidance-a-string": (lambda s: json.dumps({**s, "guidance": "cfg"}),
                          "has a guidance entry without a name"),
    "checkpoint-a-number": (lambda s: json.dumps({**s, "checkpoint": 3}), "has no checkpoint path"),
}


@pytest.mark.parametrize("case", EVALUATE_CASES)
def test_compare_refuses_what_is_not_an_evaluate_run_before_writing(tmp_path, case):
    spoil, message = EVALUATE_CASES[case]
    good = evaluate_run(tmp_path, "good", "cfg", "cond", GOOD_ROWS)
    bad = evaluate_run(tmp_path, "bad", "cfg", "uncond", GOOD_ROWS)
    (bad / "summary.json").write_text(spoil(json.loads((bad / "summary.json").read_text())))
    expected = f"evaluate_runs: {bad} is not a `make evaluate` run: {bad}/summary.json"
    if case == "not-json":  # through the CLI once: one line, exit 2
        out = run_forked("ldmlab.commands.report", [f"evaluate_runs=[{good},{bad}]"], tmp_path / "logs")
        assert out.returncode == 2 and message in one_error_line(out, f"error: {expected}")
    with pytest.raises(ConfigError) as refused:
        write_comparison([good, bad], tmp_path / "out")
    assert str(refused.value).startswith(expected) and message in str(refused.value)
    assert not [p for p in tmp_path.rglob("*") if p.name in REPORT_FILES]


@pytest.mark.slow  # ~80 s on 2 busy cores: 2 jobs × 2 gloo ranks, each child a fresh interpreter
def test_a_diverged_ddp_job_does_not_kill_the_sweep(tmp_path):
    """Under DDP the diverged job's child rank exits 2, and Lightning's observer of the children
    SIGKILLed the sweep (exit 137) before job 1 could run; it is retired when the job ends."""
    args = ["hydra.mode=MULTIRUN", "trainer=ddp_cpu", "logger=none", "data.train_subset=64",
            "data.val_subset=32", "data.batch_size=16", "classifier.widths=[8,16]", "classifier.groups=4",
            "trainer.max_epochs=2", "module.optimizer.lr=1e30,1e-3"]
    out = run_cli("ldmlab.commands.train", args, tmp_path, config_name="train_classifier")
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1].startswith(
        "error: multirun: 1 of 2 jobs failed: #0 (module.optimizer.lr=1e+30): diverged: ")
    (sweep_dir,) = (tmp_path / "train_classifier" / "multiruns").iterdir()
    assert [statuses(sweep_dir)[job]["status"] for job in ("0", "1")] == ["diverged", "completed"]


@pytest.mark.parametrize("where", ["summary.json", "sweep_epoch001.csv", "config.yaml"])
def test_a_fifo_in_place_of_a_file_is_refused_not_read_forever(tmp_path, where):
    sweep = tmp_path / "sweep"
    fake_job(sweep, "0", 0.1, 1, [4.0, 3.0], epoch=1)
    run = evaluate_run(tmp_path, "run", "cfg", "cond", GOOD_ROWS)
    fifo = {"summary.json": run / "summary.json", "config.yaml": sweep / "0" / ".hydra" / "config.yaml",
            "sweep_epoch001.csv": sweep / "0" / "guidance_sweep" / "sweep_epoch001.csv"}[where]
    fifo.unlink()
    os.mkfifo(fifo)
    args = [f"evaluate_runs=[{run}]"] if where == "summary.json" else [f"sweep_dir={sweep}"]
    out = run_forked("ldmlab.commands.report", args, tmp_path / "logs", timeout=60)
    assert out.returncode == 2 and str(fifo) in one_error_line(out, "error: ")
