"""Sweep the guidance scale during training (CFG by default): samples at each scale → FID/IS/….

Every ``every_n_epochs`` validation epochs and after the last one, all ranks draw ``num_samples``
images per grid point and seed with the EMA weights — the grid is the scales × every combination
of ``grid`` sampler settings (see ``ldmlab.evaluation.grid``) and of ``grid.guidance`` guidance
settings (``ldmlab.evaluation.guidance_grid``; per-image seeds, each rank its share of the images, features
gathered, in ``ldmlab.evaluation.sweep``) — and rank 0 scores them against ``num_reference`` real
images of ``reference_split``. Every row and cell carries its provenance (``num_samples``,
``num_reference``, ``reference``, ``feature_networks``, ``nfe``, ``ldmlab_version``). Results go to

- ``<out_dir>/sweep_epochEEE.csv`` (one row per grid point, mean and ``*_seed_std`` over
  ``seeds``), ``sweep_epochEEE_per_seed.csv`` (several seeds), ``sweep_epochEEE.png`` (FID vs s,
  IS vs s, FID–IS frontier; or metric vs the swept sampler setting), ``<out_dir>/best.json``;
- the loggers: ``sweep/<metric>@s=<s>[,<setting>=<v>…],n=<num_samples>`` per grid point
  (varying guidance and sampler settings; n, the generated images behind the score, so an FID
  of a few hundred samples is never read as FID-50K),
  ``val/sweep/best_guidance_scale`` and
  ``val/sweep/best_score`` (the ``select_by`` metric there, a valid ``optimized_metric``), and on
  wandb a table plus line charts;
- ``summary_extras()``: ``{"guidance_sweep": best row + epoch + metric}`` for ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from ldmlab.callbacks.epoch_schedule import is_due
from ldmlab.config.types import PositiveInt
from ldmlab.evaluation.columns import GUIDANCE_PREFIX, SAMPLER_PREFIX, metric_keys, varying_axes
from ldmlab.evaluation.grid import sampler_grid
from ldmlab.evaluation.guidance_grid import guidance_grid
from ldmlab.evaluation.plots import frontier_keys
from ldmlab.evaluation.reference import check_counts, load_reference
from ldmlab.evaluation.seeds import mean_over_seeds
from ldmlab.evaluation.sweep import check_seeds, check_select_by, check_settings, grid_sweep, select_best
from ldmlab.evaluation.sweep_files import write_sweep
from ldmlab.evaluation.table import Row, columns
from ldmlab.guidance.base import Guidance
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.guidance.inputs import guided_condition
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.sampling.samplers.base import Sampler
from ldmlab.utils.atomic_output import write_json
from ldmlab.utils.errors import ConfigError, FieldError, part_key, part_keys


def _own_keys():
    """Within the block, the sweep's settings are this callback's fields (errors name its keys)."""
    return part_keys(sweep=part_key("guidance_sweep"))


class GuidanceSweep(pl.Callback):
    """guidance_scales: the s values of ``guidance`` (None: CFG, ε̃ = ε_u + s·(ε_c − ε_u));
    metrics: ``FidelityEvaluator`` without its reference (a Hydra ``_partial_``); sampler: None →
    the module's; grid: sampler settings swept on top (``{"steps": [10, 50], "eta": [0, 1]}``,
    ``{"sampler": ["ddim", "dpmpp"]}``; None: none) and, under ``guidance``, the guidance's own
    settings (``{"guidance": {"sigma_high": [2, 5, 10]}}`` with interval guidance); select_by:
    the metric that picks the best grid point (None → the first FID key; fid/kid lower, others
    higher is better); seeds: the sampling seeds (image i of seed k uses generator seed k·10⁶ + i)."""

    def __init__(
        self,
        guidance_scales: Sequence[float],
        num_samples: PositiveInt,
        metrics: Callable[..., FidelityEvaluator],
        out_dir: str,
        every_n_epochs: PositiveInt = 5,
        reference_split: str = "test",
        num_reference: PositiveInt = 2000,
        sampler: Sampler | None = None,
        batch_size: PositiveInt = 64,
        guidance: Guidance | None = None,
        select_by: str | None = None,
        grid: Mapping[str, Sequence | Mapping | str | float | None] | None = None,
        seeds: Sequence[int] = (0,),
    ) -> None:
        with _own_keys():
            self.guidance_scales = check_settings(guidance_scales, num_samples, batch_size)
            self.seeds = check_seeds(seeds)
        self.guidance = guidance or ClassifierFreeGuidance()
        with _own_keys(), part_keys(guidance=part_key("guidance_sweep", "guidance")):
            self.guidances = guidance_grid(self.guidance, (grid or {}).get("guidance"))
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise FieldError("guidance_sweep", "every_n_epochs",
                             f"must be an integer ≥ 1, got {every_n_epochs!r}", "e.g. {key}=5")
        self.num_samples, self.metrics, self.out_dir = num_samples, metrics, Path(out_dir)
        self.every_n_epochs = every_n_epochs
        self.reference_split, self.num_reference = reference_split, num_reference
        self.select_by, self.sampler, self.grid = select_by, sampler, dict(grid or {})
        self.batch_size = batch_size
        self.samplers: list = []
        self.evaluator: FidelityEvaluator | None = None
        self.condition: dict = {}
        self.best: dict = {}
        self._swept_epoch = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Reference set, evaluator and conditions, checked before any training step."""
        if stage != "fit" or self.evaluator is not None:
            return
        if trainer.datamodule is None:
            raise ConfigError(part_key("guidance_sweep"), "needs a datamodule for its reference images",
                              "fit with datamodule=... or remove the callback")
        with _own_keys():
            reference, dataset = load_reference(trainer.datamodule, self.reference_split, self.num_reference)
            self.evaluator = self.metrics(reference=reference)
            check_counts(self.evaluator, self.num_samples)
            self.condition = guided_condition(pl_module.model["conditioner"], self.guidance, self.num_samples,
                                              source=dataset)
            check_select_by(self.select_by, self.evaluator.metric_names(labelled="label" in self.condition))
            sampler_axes = {axis: values for axis, values in self.grid.items() if axis != "guidance"}
            self.samplers = sampler_grid(self.sampler or pl_module.sampler, sampler_axes,
                                         pl_module.schedule.num_timesteps, pl_module.horizon)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or epoch == self._swept_epoch or not is_due(trainer, self.every_n_epochs):
            return
        self._swept_epoch = epoch
        rows = grid_sweep(pl_module, self.evaluator, self.condition, self.guidance, self.guidance_scales,
                          self.num_samples, samplers=self.samplers, seeds=self.seeds,
                          batch_size=self.batch_size, guidances=self.guidances)
        cells = mean_over_seeds(rows)
        with _own_keys():
            metric, best = select_best(cells, self.select_by)
        self.best = {"epoch": epoch, "select_by": metric, **best}
        settings = [a for a in varying_axes(cells) if a.startswith((GUIDANCE_PREFIX, SAMPLER_PREFIX))
                    or a == "sampler"]
        for cell in cells:
            where = ",".join([f"s={cell['guidance_scale']:g}",
                              *(f"{axis.rsplit('.', 1)[-1]}={cell[axis]}" for axis in settings),
                              f"n={self.num_samples}"])
            for key in metric_keys(cells):
                pl_module.log(f"sweep/{key}@{where}", float(cell[key]), sync_dist=True)
        pl_module.log("val/sweep/best_guidance_scale", float(best["guidance_scale"]), sync_dist=True)
        pl_module.log("val/sweep/best_score", float(best[metric]), sync_dist=True)
        if trainer.is_global_zero:
            _, files = write_sweep(rows, self.out_dir / f"sweep_epoch{epoch:03d}",
                                   f"{self.guidance.name} sweep, epoch {epoch}")
            write_json(self.out_dir / "best.json", self.best)
            self._log_wandb(trainer, cells, epoch, files["plot"])

    def summary_extras(self) -> dict:
        return {"guidance_sweep": self.best} if self.best else {}

    @staticmethod
    def _log_wandb(trainer: pl.Trainer, rows: list[Row], epoch: int, plot: Path) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        import wandb  # only with a WandbLogger: importing wandb costs seconds

        names = columns(rows)
        table = wandb.Table(columns=names, data=[[row.get(name) for name in names] for row in rows])
        fid, quality = frontier_keys(rows)
        charts = {"guidance_sweep/table": table, "guidance_sweep/plot": wandb.Image(str(plot))}
        for key in (fid, quality):
            if key:
                charts[f"guidance_sweep/{key}_vs_s"] = wandb.plot.line(
                    table, "guidance_scale", key, title=f"{key} vs guidance scale s (epoch {epoch})")
        if fid and quality:
            charts["guidance_sweep/frontier"] = wandb.plot.line_series(
                xs=[row[fid] for row in rows], ys=[[row[quality] for row in rows]], keys=[f"epoch {epoch}"],
                title=f"{fid} vs {quality} over s (epoch {epoch})", xname=fid)
        for logger in loggers:
            logger.experiment.log({**charts, "trainer/global_step": trainer.global_step})
