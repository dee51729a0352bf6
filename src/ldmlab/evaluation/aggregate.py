"""One table and one FID–IS frontier from the in-run sweeps of every job of a multirun.

A job is a ``<sweep_dir>/<n>/`` folder with ``.hydra/config.yaml``; its sweep is its newest
``guidance_sweep/sweep_epochEEE_per_seed.csv`` (several sampling seeds) or ``sweep_epochEEE.csv``.
Jobs are grouped by the values of the ``group_by`` config keys (e.g. ``conditioner.p_uncond``);
jobs in one group must differ only in ``seed_key`` (the training seed, column ``run_seed``).
Each cell — group × grid point (guidance scale and sampler settings) — reports the mean over its
rows (jobs × sampling seeds), their number (``seeds``) and, over ≥ 2, their standard deviation
(column ``<metric>_seed_std``, ``±`` in the Markdown table). Every row must share its provenance
(sample and reference counts, reference, feature networks, version: ``ldmlab.evaluation.provenance``),
stated above the table, unless ``allow_mixed_provenance``. A job whose recorded status
(``ldmlab.runs.multirun``) is not ``completed`` is left out and listed under the table with its
reason. Job dirs are read as data (``job_config``); a malformed file is refused before anything
is written.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ldmlab.config.job_config import MISSING, config_value, read_job_config
from ldmlab.evaluation.columns import SAMPLER_PREFIX, SPREAD, measure_keys, table_problem, varying_axes
from ldmlab.evaluation.plots import frontier_keys, plot_frontier, plot_grid
from ldmlab.evaluation.provenance import differing, provenance_lines, value_text
from ldmlab.evaluation.seeds import mean_over_seeds
from ldmlab.evaluation.sweep_files import plot_axis
from ldmlab.evaluation.table import Row, format_value, read_csv, write_csv, write_markdown
from ldmlab.runs.multirun import COMPLETED, describe, job_dirs, read_status, shared_overrides
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.output_dir import free_name
from ldmlab.utils.owned_files import check_replaceable, record_written

TABLE_METRICS = ("fid_", "kid_", "is_", "accuracy_", "seconds_per_image")
RUN_SEED = "run_seed"
RECORD = "report_files.json"  # the report files ldmlab wrote there, with their sha256 (utils.owned_files)
log = logging.getLogger(__name__)


def newest_sweep_csv(job_dir: Path) -> Path | None:
    """The newest epoch's per-seed rows when they exist, else its one-row-per-point table."""
    found = {int(m.group(1)): p for p in job_dir.glob("guidance_sweep/sweep_epoch*.csv")
             if (m := re.fullmatch(r"sweep_epoch(\d+)\.csv", p.name))}
    if not found:
        return None
    newest = found[max(found)]
    per_seed = newest.with_name(f"{newest.stem}_per_seed.csv")
    return per_seed if per_seed.exists() else newest


def short_name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


Job = tuple[tuple, object, list[Row]]
"""(values of the group_by keys, training seed, sweep rows) of one job."""


def load_jobs(sweep_dir: Path, group_by: Sequence[str], seed_key: str) -> tuple[list[Job], list[dict]]:
    """(every job under ``sweep_dir`` that completed and has a sweep CSV, the jobs' status records:
    ``ldmlab.runs.multirun``). Every file is read as data and checked before anything is written."""
    statuses = {d.name: read_status(d) for d in job_dirs(sweep_dir)}  # None: none recorded (older sweeps)
    jobs = []
    for config_file in sorted(sweep_dir.glob("*/.hydra/config.yaml")):
        job_dir = config_file.parents[1]
        if (statuses.get(job_dir.name) or {}).get("status", COMPLETED) != COMPLETED:
            continue
        table = newest_sweep_csv(job_dir)
        if table is None:
            log.warning("report: %s has no guidance_sweep/sweep_epoch*.csv; left out", job_dir)
            continue
        config = read_job_config(config_file)
        values = []
        for key in (*group_by, seed_key):
            value = config_value(config, key, config_file)
            if value is MISSING:
                raise ConfigError("group_by", f"job {job_dir} has no config key {key!r}",
                                  "name keys of the train_ldm config, e.g. group_by=[conditioner.p_uncond]")
            values.append(value)
        jobs.append((tuple(values[:-1]), values[-1], read_sweep_csv(table)))
    if not jobs:
        raise ConfigError("sweep_dir", f"no completed job under {sweep_dir} has a guidance sweep CSV",
                          "run the multirun with callbacks=ldm_sweep (experiment=cfg_sweep_fmnist)")
    return jobs, [r for r in statuses.values() if r]


def read_sweep_csv(path: Path) -> list[Row]:
    """The rows of a job's sweep CSV; refused (``sweep_dir``) unless they form a sweep table."""
    try:
        if not path.is_file():  # a FIFO or a device would never end
            raise FileNotFoundError(path)
        rows = read_csv(path)
        problem = table_problem(rows)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        problem = f"is unreadable ({type(err).__name__})"
    if problem:
        raise ConfigError("sweep_dir", f"{path} {problem}",
                          "rerun that job, or move its dir out of the sweep dir to report the others")
    return rows


def aggregate(jobs: Sequence[Job], group_by: Sequence[str]) -> list[Row]:
    """One row per (group, grid point), sorted by group then scale (then first seen): the group
    values, the grid point's axes, ``seeds`` (rows averaged: jobs × sampling seeds), each
    measure's mean and, over ≥ 2 rows, its standard deviation."""
    names = [short_name(k) for k in group_by]
    seen: set[tuple] = set()
    tagged = []
    for group, seed, rows in jobs:
        if (group, seed) in seen:
            shared = dict(zip(group_by, group, strict=True))
            raise ConfigError("group_by", f"two jobs share {shared} and seed {seed}, so they differ in "
                              "another setting", "add that config key to group_by")
        seen.add((group, seed))
        tagged += [{**dict(zip(names, group, strict=True)), RUN_SEED: seed, **row} for row in rows]
    cells = mean_over_seeds(tagged, seed_keys=("seed", RUN_SEED), extra_axes=names)
    for cell in cells:
        cell.setdefault("w", float(cell["guidance_scale"]) - 1)
    return sorted(cells, key=lambda c: (tuple(c[n] for n in names), float(c["guidance_scale"])))


def write_report(sweep_dir: Path, group_by: Sequence[str], seed_key: str = "seed",
                 out: Path | None = None, allow_mixed_provenance: bool = False) -> dict[str, Path]:
    """``report.csv``, ``report.md``, ``frontier.png`` and, when sampler settings vary,
    ``grid.png`` in ``out`` (default: ``sweep_dir``); returns their paths. A file of one of those
    names that ldmlab did not write there (or that changed since) is never replaced: refused
    (``out``, fix: a free folder) before anything is written, as are jobs of differing provenance
    unless ``allow_mixed_provenance`` (then its differing columns are shown per row and curve)."""
    out = sweep_dir if out is None else out
    jobs, statuses = load_jobs(sweep_dir, group_by, seed_key)
    rows = aggregate(jobs, group_by)
    preamble = provenance_lines(rows, allow_mixed_provenance, f"the report of {sweep_dir}")
    mixed = list(differing(rows))
    names = [short_name(k) for k in group_by]
    settings = [a for a in varying_axes(rows) if a == "sampler" or a.startswith(SAMPLER_PREFIX)]
    measures = measure_keys(rows, names)
    metrics = [k for prefix in TABLE_METRICS for k in measures if k.startswith(prefix)]
    header = [*names, *(short_name(a) for a in settings), *mixed, "s", "w", "seeds", *metrics]
    lines = [[*(format_value(row[n]) for n in [*names, *settings]), *(value_text(row.get(k)) for k in mixed),
              f"{row['guidance_scale']:g}", f"{row['w']:g}", str(row["seeds"]),
              *(format_value(row.get(m), row.get(m + SPREAD)) for m in metrics)] for row in rows]
    failed = failed_jobs_section(statuses)
    fid, quality = frontier_keys(rows)
    files = ["report.csv", "report.md", *(["frontier.png"] if fid and quality else []),
             *(["grid.png"] if settings else [])]
    check_replaceable(out, files, RECORD, "out", f"out={free_name(out / 'report')}")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    try:  # each file written is recorded, even if a later one fails
        paths["csv"] = write_csv(rows, out / "report.csv")
        paths["markdown"] = write_markdown(header, lines, out / "report.md", footer=failed, preamble=preamble)
        if fid and quality:
            curves = defaultdict(list)
            for row in rows:
                label = [*(f"{n}={format_value(row[n])}" for n in [*names, *settings]),
                         *(f"{k}={value_text(row.get(k))}" for k in mixed)]
                curves[", ".join(label)].append(row)
            paths["frontier"] = plot_frontier(curves, fid, quality, out / "frontier.png",
                                              title=f"{sweep_dir.name}: {fid} vs {quality} over s")
        else:
            log.warning("report: no FID and IS/accuracy columns, so no frontier plot")
        if settings:
            paths["grid"] = plot_grid(rows, plot_axis(rows), out / "grid.png", f"{sweep_dir.name}",
                                      [*names, *mixed])
    finally:
        record_written(out, paths.values(), RECORD)
    return paths


def failed_jobs_section(statuses: Sequence[dict]) -> str:
    """Markdown listing the jobs left out of the table because they did not complete, and why
    (each named by its overrides that not every job shares)."""
    failed = [record for record in statuses if record["status"] != COMPLETED]
    if not failed:
        return ""
    shared = shared_overrides(statuses)
    lines = ["", f"Failed jobs, left out of the table ({len(failed)} of {len(statuses)}):", ""]
    return "\n".join([*lines, *(f"- {describe(record, shared)}" for record in failed)]) + "\n"
