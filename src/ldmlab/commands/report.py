"""Aggregate a multirun's guidance sweeps: ``make report ARGS="sweep_dir=logs/train_ldm/multiruns/<ts>"``,
or compare ``make evaluate`` runs on one frontier: ``make report ARGS="evaluate_runs=[A,B]"``.

Writes ``report.csv`` (every metric, mean and seed spread per group × s), ``report.md``
(FID/KID/IS/accuracy, ``mean ± std`` over seeds) and ``frontier.png`` (one FID–IS curve per
group, points labelled by s) into the sweep dir (or ``out``), replacing only report files ldmlab
wrote there (listed in ``report_files.json``). With ``evaluate_runs``: ``compare.csv``,
``compare.md`` and ``frontier.png`` (one curve per run, e.g. CFG vs classifier guidance) into the
report's own run dir ``logs/report/runs/<ts>``. ``AggregateOnMultirunEnd`` does the same as a
Hydra callback when the multirun finishes (``hydra.callbacks`` of ``experiment=cfg_sweep_fmnist``).
Each table states the provenance of its scores above it (samples vs references, reference set,
feature networks, NFE, version); rows of differing provenance are refused together unless
``allow_mixed_provenance=true`` (``ldmlab.evaluation.provenance``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ldmlab.commands.cli import command
from ldmlab.commands.finish import run_dir
from ldmlab.config.settings import ReportSettings
from ldmlab.evaluation.aggregate import write_report
from ldmlab.evaluation.compare import write_comparison
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.output_dir import checked_output_dir

log = logging.getLogger(__name__)


def newest_multirun(task_dir: Path) -> Path:
    runs = sorted(path for path in task_dir.glob("multiruns/*") if path.is_dir())
    if not runs:
        raise ConfigError("sweep_dir", f"no multirun under {task_dir / 'multiruns'}",
                          "run `make sweep` first or give sweep_dir=...")
    return runs[-1]


def report(cfg: DictConfig) -> dict[str, Path]:
    if cfg.evaluate_runs:
        paths = write_comparison([Path(run) for run in cfg.evaluate_runs], run_dir(), cfg.labels,
                                 cfg.allow_mixed_provenance)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return paths
    task_dir = Path(cfg.paths.log_dir) / cfg.sweep_task
    sweep_dir = Path(cfg.sweep_dir) if cfg.sweep_dir else newest_multirun(task_dir)
    if not sweep_dir.is_dir():
        raise ConfigError("sweep_dir", f"{sweep_dir} is not a directory", "give a multirun dir")
    out = checked_output_dir(cfg.out, "out") if cfg.out else None
    paths = write_report(sweep_dir, list(cfg.group_by), cfg.seed_key, out, cfg.allow_mixed_provenance)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


class AggregateOnMultirunEnd(Callback):
    """Hydra callback: the report of ``hydra.sweep.dir`` once every job has finished."""

    def __init__(self, group_by: Sequence[str] = ("conditioner.p_uncond",), seed_key: str = "seed") -> None:
        self.group_by, self.seed_key = list(group_by), seed_key

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        try:
            paths = write_report(Path(config.hydra.sweep.dir), self.group_by, self.seed_key)
        except ConfigError as err:  # a finished multirun is worth more than its report
            log.warning("no sweep report: %s", err)
            return
        log.info("sweep report: %s", ", ".join(str(p) for p in paths.values()))


main = command(report, "report", ReportSettings)

if __name__ == "__main__":
    main()
