"""The end of a multirun reads every job's status from its dir (jobs run by other processes, e.g.
submitit, count too): a job that left none, or a malformed one, is a failure of unknown cause."""

from __future__ import annotations

import csv
import json

from omegaconf import OmegaConf

from ldmlab.runs.multirun import STATUS_FILE, JobStatuses, ended_with_failures


def job(sweep_dir, num, status=None, reason="", overrides=("lr=1",)):
    (sweep_dir / str(num) / ".hydra").mkdir(parents=True)
    if status:
        record = {"num": num, "overrides": ["data=x", *overrides], "status": status, "reason": reason}
        (sweep_dir / str(num) / STATUS_FILE).write_text(json.dumps(record))


def test_statuses_come_from_the_job_dirs(tmp_path):
    for num in range(11):  # job order is numeric: #10 after #9; #10 was killed before it recorded anything
        status = {9: "diverged", 10: None}.get(num, "completed")
        job(tmp_path, num, status, "lr: NaN. Fix: lr=0.1" if num == 9 else "", (f"lr={num}",))
    JobStatuses().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    line, status = ended_with_failures()
    assert line == ("multirun: 2 of 11 jobs failed: #9 (lr=9): diverged: lr: NaN. Fix: lr=0.1; #10 (): "
                    "unknown: no status recorded: the job was killed or never ran; "
                    f"see {tmp_path / 'jobs.csv'}")
    assert status == 1  # not only user errors
    with (tmp_path / "jobs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["num"] for r in rows] == [str(n) for n in range(11)] and rows[9]["status"] == "diverged"
    assert ended_with_failures() is None  # reported once


def test_only_user_errors_exit_2_and_a_clean_sweep_exits_0(tmp_path):
    job(tmp_path / "a", 0, "completed")
    job(tmp_path / "a", 1, "bad input", "data.batch_size: must be ≥ 1. Fix: data.batch_size=16", ("lr=2",))
    JobStatuses().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "a")}}}))
    assert ended_with_failures()[1] == 2
    job(tmp_path / "b", 0, "completed")
    (tmp_path / "b" / "0" / STATUS_FILE).write_text("[1, 2]")  # malformed: not trusted as completed
    JobStatuses().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "b")}}}))
    line, status = ended_with_failures()
    assert "#0 (): unknown: sweep_dir: " in line and "is not a job status record" in line and status == 1
    job(tmp_path / "c", 0, "completed")
    JobStatuses().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "c")}}}))
    assert ended_with_failures() is None
