"""One table and one FID–IS frontier from the guidance sweeps of every job of a multirun.

A job is a ``<sweep_dir>/<n>/`` folder with ``.hydra/config.yaml``; its sweep is its newest
``guidance_sweep/sweep_epochEEE.csv``. Jobs are grouped by the values of the ``group_by`` config
keys (e.g. ``conditioner.p_uncond``); jobs in one group must differ only in ``seed_key``, and
each (group, s) row reports the mean over those seeds and, with several, their standard
deviation (column ``<metric>_seed_std``, ``±`` in the Markdown table).
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from ldmlab.evaluation.plots import SPREAD, frontier_keys, plot_frontier
from ldmlab.evaluation.sweep import metric_keys
from ldmlab.evaluation.table import Row, format_value, read_csv, write_csv, write_markdown
from ldmlab.utils.errors import ConfigError

TABLE_METRICS = ("fid_", "kid_", "is_", "accuracy_")
log = logging.getLogger(__name__)


def newest_sweep_csv(job_dir: Path) -> Path | None:
    found = {int(m.group(1)): p for p in job_dir.glob("guidance_sweep/sweep_epoch*.csv")
             if (m := re.fullmatch(r"sweep_epoch(\d+)\.csv", p.name))}
    return found[max(found)] if found else None


def short_name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


Job = tuple[tuple, object, list[Row]]
"""(values of the group_by keys, seed, sweep rows) of one job."""


def load_jobs(sweep_dir: Path, group_by: Sequence[str], seed_key: str) -> list[Job]:
    """Every job under ``sweep_dir`` that has a sweep CSV."""
    jobs = []
    for config_file in sorted(sweep_dir.glob("*/.hydra/config.yaml")):
        job_dir = config_file.parents[1]
        csv = newest_sweep_csv(job_dir)
        if csv is None:
            log.warning("report: %s has no guidance_sweep/sweep_epoch*.csv; left out", job_dir)
            continue
        config = OmegaConf.load(config_file)
        values = []
        for key in (*group_by, seed_key):
            value = OmegaConf.select(config, key, default="__missing__", throw_on_resolution_failure=False)
            if value == "__missing__":
                raise ConfigError("group_by", f"job {job_dir} has no config key {key!r}",
                                  "name keys of the train_ldm config, e.g. group_by=[conditioner.p_uncond]")
            values.append(value)
        jobs.append((tuple(values[:-1]), values[-1], read_csv(csv)))
    if not jobs:
        raise ConfigError("sweep_dir", f"no job under {sweep_dir} has a guidance sweep CSV",
                          "run the multirun with callbacks=ldm_sweep (experiment=cfg_sweep_fmnist)")
    return jobs


def aggregate(jobs: Sequence[Job], group_by: Sequence[str]) -> list[Row]:
    """One row per (group, s): group values, s, w, seeds, each metric's mean (and seed spread)."""
    cells: dict[tuple, dict[float, list[Row]]] = defaultdict(lambda: defaultdict(list))
    seen: dict[tuple, object] = {}
    for group, seed, rows in jobs:
        if (group, seed) in seen:
            shared = dict(zip(group_by, group, strict=True))
            raise ConfigError("group_by", f"two jobs share {shared} and seed {seed}, so they differ in "
                              "another setting", "add that config key to group_by")
        seen[(group, seed)] = True
        for row in rows:
            cells[group][float(row["guidance_scale"])].append(row)
    out = []
    for group in sorted(cells):
        for scale in sorted(cells[group]):
            rows = cells[group][scale]
            row: Row = {short_name(k): v for k, v in zip(group_by, group, strict=True)}
            row |= {"guidance_scale": scale, "w": scale - 1, "seeds": len(rows)}
            for key in metric_keys(rows):
                values = [r[key] for r in rows if key in r]
                row[key] = statistics.fmean(values)
                if len(values) > 1:
                    row[key + SPREAD] = statistics.stdev(values)
            out.append(row)
    return out


def write_report(sweep_dir: Path, group_by: Sequence[str], seed_key: str = "seed") -> dict[str, Path]:
    """``report.csv``, ``report.md`` and ``frontier.png`` in ``sweep_dir``; returns their paths."""
    jobs = load_jobs(sweep_dir, group_by, seed_key)
    rows = aggregate(jobs, group_by)
    names = [short_name(k) for k in group_by]
    every_row = [r for *_, job_rows in jobs for r in job_rows]
    metrics = [k for prefix in TABLE_METRICS for k in metric_keys(every_row) if k.startswith(prefix)]
    header = [*names, "s", "w", "seeds", *metrics]
    lines = [[*(format_value(row[n]) for n in names), f"{row['guidance_scale']:g}", f"{row['w']:g}",
              str(row["seeds"]), *(format_value(row.get(m), row.get(m + SPREAD)) for m in metrics)]
             for row in rows]
    paths = {"csv": write_csv(rows, sweep_dir / "report.csv"),
             "markdown": write_markdown(header, lines, sweep_dir / "report.md")}
    fid, quality = frontier_keys(rows)
    if fid and quality:
        curves = defaultdict(list)
        for row in rows:
            curves[", ".join(f"{n}={row[n]}" for n in names)].append(row)
        paths["frontier"] = plot_frontier(curves, fid, quality, sweep_dir / "frontier.png",
                                          title=f"{sweep_dir.name}: {fid} vs {quality} over s")
    else:
        log.warning("report: no FID and IS/accuracy columns, so no frontier plot")
    return paths
