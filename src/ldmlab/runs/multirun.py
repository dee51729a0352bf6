"""One failed job does not end a multirun (``-m``): every job leaves a status, the rest run.

In a multirun, ``run_job`` runs one job's task and writes ``<job dir>/job_status.json``:
``{"num", "overrides", "status", "reason"}`` with status ``completed``, ``diverged`` (training
produced NaN/Inf), ``bad input`` (a user error: the one line single-run mode would print),
``bug`` (any other exception: its traceback goes to the job's log, the reason is
``<ExceptionType>: <message>``) or ``interrupted`` (Ctrl+C, SIGTERM: recorded, then the sweep
stops, as asked). A failed job returns None to Hydra, so the launcher goes on with the next job
and ``on_multirun_end`` callbacks (the sweep report) still run.

``JobStatuses`` (a Hydra callback of conf/hydra/default.yaml) reads the statuses back from the
job dirs when the multirun ends — so jobs run by another process (submitit) count too — writes
``<sweep dir>/jobs.csv`` and leaves ``ended_with_failures`` one line naming the failed jobs:
the entry point then exits 2 when every failure was the user's (diverged, bad input), else 1 (a
bug, or ``unknown``: a job dir without a readable status, e.g. a killed job). A sweeper that
raises once its jobs have failed (Optuna when no trial completed) ends the same way
(``stopped_with_failures``).

A bug continues rather than ending the sweep because Hydra's own launcher already runs the
remaining jobs after an exception; ending the sweep would only lose the report of what did
complete. The traceback stays visible (console and ``<job dir>/<task>.log``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ldmlab.utils.atomic_output import write_file, write_json
from ldmlab.utils.errors import ConfigError, DivergedError

STATUS_FILE = "job_status.json"
JOBS_TABLE = "jobs.csv"
COMPLETED, BUG, UNKNOWN = "completed", "bug", "unknown"
USER_CAUSED = ("diverged", "bad input")  # exit 2, as in single-run mode; anything else exits 1
RANK_VARIABLES = ("RANK", "SLURM_PROCID")  # under torchrun / srun every rank runs the sweep
log = logging.getLogger(__name__)
_ended: list[tuple[Path, list[dict]]] = []
_started: list[Path] = []  # sweep dirs of the multiruns begun and not yet ended


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(task: Callable, cfg: DictConfig, user_error: Callable[[BaseException], BaseException | None]):
    """``task(cfg)`` as one job of a multirun; its status goes to the job dir (module doc).
    ``user_error`` maps an exception to the user error behind it, or None for a bug."""
    hydra = HydraConfig.get()
    job_dir = Path(hydra.runtime.output_dir)
    record = {"num": hydra.job.num, "overrides": list(hydra.overrides.task)}
    try:
        result = task(cfg)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            log.error("job #%s crashed", record["num"], exc_info=err)
            status, reason = BUG, f"{type(err).__name__}: {err} (traceback in {_log_file(job_dir)})"
        else:
            status, reason = "diverged" if isinstance(cause, DivergedError) else "bad input", str(cause)
        _write_status(job_dir, {**record, "status": status, "reason": reason})
        log.warning("job #%s %s: %s", record["num"], status, " ".join(reason.split()))
        return None
    except BaseException as err:
        _write_status(job_dir, {**record, "status": "interrupted", "reason": repr(err)})
        raise
    _write_status(job_dir, {**record, "status": COMPLETED, "reason": ""})
    return result


def _write_status(job_dir: Path, record: dict) -> None:
    if all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES):
        record["reason"] = " ".join(str(record["reason"]).split())
        write_json(job_dir / STATUS_FILE, record)


def _log_file(job_dir: Path) -> str:
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    return files[0] if files else str(job_dir)


def read_status(job_dir: Path, key: str = "sweep_dir") -> dict | None:
    """The job's status record, or None when it left none; a malformed one is refused (``key``)."""
    path = job_dir / STATUS_FILE
    if not path.exists():
        return None
    try:
        if not path.is_file():  # a FIFO or a device would never end
            raise FileNotFoundError(path)
        record = json.loads(path.read_text())
        fields = (record["num"], record["status"], record["reason"])
        valid = all(isinstance(v, str | int) for v in fields) and isinstance(record["overrides"], list)
    except (OSError, ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise ConfigError(key, f"{path} is not a job status record", f"remove {path} or rerun the job")
    return record


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs of ``sweep_dir`` (Hydra wrote ``.hydra/`` or a job wrote its status there),
    in job order."""
    found = {p.parent for pattern in ("*/.hydra", f"*/{STATUS_FILE}") for p in sweep_dir.glob(pattern)}
    return sorted(found, key=lambda d: (len(d.name), d.name))


def recorded_status(job_dir: Path) -> dict:
    """The job's status record; a job that left none (killed, or another process's job that never
    started) or a malformed one counts as ``unknown``."""
    try:
        record = read_status(job_dir)
    except ConfigError as err:
        return {"num": job_dir.name, "overrides": [], "status": UNKNOWN, "reason": str(err)}
    return record or {"num": job_dir.name, "overrides": [], "status": UNKNOWN,
                      "reason": "no status recorded: the job was killed or never ran"}


def shared_overrides(records: Sequence[dict]) -> set[str]:
    """The overrides every one of several jobs has (the sweep's fixed settings); jobs that
    recorded none (``unknown``) are left out."""
    known = [set(r["overrides"]) for r in records if r["overrides"]]
    return set.intersection(*known) if len(known) > 1 else set()


def describe(record: dict, shared: set[str] = frozenset()) -> str:
    """``#0 (lr=1e30): diverged: <reason>``, leaving out the ``shared`` overrides (those of every
    job)."""
    overrides = " ".join(o for o in record["overrides"] if o not in shared)
    return f"#{record['num']} ({overrides}): {record['status']}: {record['reason']}"


class JobStatuses(Callback):
    """Hydra callback: when a multirun ends, its job statuses go to ``jobs.csv`` and any failure
    to ``ended_with_failures`` (module doc)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _started.append(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        _record_end(Path(config.hydra.sweep.dir))


def _record_end(sweep_dir: Path) -> None:
    if sweep_dir in _started:
        _started.remove(sweep_dir)
    records = [recorded_status(job_dir) for job_dir in job_dirs(sweep_dir)]
    if not records:  # no job started
        return

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["num", "overrides", "status", "reason"])
            writer.writeheader()
            writer.writerows({**r, "overrides": " ".join(r["overrides"])} for r in records)

    write_file(sweep_dir / JOBS_TABLE, write)
    _ended.append((sweep_dir, records))


def stopped_with_failures(err: BaseException) -> tuple[str, int] | None:
    """After a multirun that raised ``err`` instead of ending (Optuna's "No trials are completed
    yet" when every trial failed; Ctrl+C, SIGTERM): its statuses recorded as at an end, and (the
    line naming its failed jobs and ``err``, exit status) as ``ended_with_failures``; None when no
    multirun was running or none of its jobs failed (``err`` is then a bug of its own)."""
    if not _started:
        return None
    _record_end(_started[-1])
    ended = ended_with_failures()
    if ended is None:
        return None
    line, status = ended
    return f"{line}; the multirun then stopped: {type(err).__name__}: {err}", status


def ended_with_failures() -> tuple[str, int] | None:
    """After a multirun: (one line naming its failed jobs, exit status 2 or 1 for a bug), or
    None when every job completed (or no multirun ran in this process)."""
    if not _ended:
        return None
    sweep_dir, records = _ended.pop()
    failed = [r for r in records if r["status"] != COMPLETED]
    if not failed:
        return None
    shared = shared_overrides(records)
    report = sweep_dir / "report.md"
    see = report if report.exists() else sweep_dir / JOBS_TABLE
    line = (f"multirun: {len(failed)} of {len(records)} jobs failed: "
            + "; ".join(describe(r, shared) for r in failed) + f"; see {see}")
    return line, 2 if all(r["status"] in USER_CAUSED for r in failed) else 1
