"""Sweep of a trained LDM, offline: ``make evaluate ARGS="ckpt=... guidance_scales=[1,2,3]"``.

The grid is guidance scales × sampler settings × sampling seeds: the scale of the configured
``guidance`` (default cfg; ``guidance=classifier`` sweeps the classifier-guidance scale,
``guidance=cfg_classifier`` the term named by ``guidance.sweep``), every combination of
``grid.<setting>`` (``grid.sampler=[ddim,dpmpp]``, ``grid.steps=[10,50]``, ``grid.eta=[0,1]``, …)
and every seed of ``seeds``; ``+grid.guidance.<setting>`` sweeps the guidance's own settings too
(``guidance=interval +grid.guidance.sigma_high=[2,5,10]``: the interval's upper bound, outermost).
Loads the checkpoint (weights only), rebuilds the datamodule from the config stored in it (or
``data=...``) for the reference images, samples ``num_samples`` images per grid point and seed
and writes, into ``logs/evaluate/runs/<timestamp>/``,
``guidance_sweep.csv`` (one row per grid point: mean, ``*_seed_std`` and ``seeds``),
``guidance_sweep_per_seed.csv`` (with several seeds), ``guidance_sweep.png`` (FID/IS vs s and
the frontier, or metric vs the swept sampler setting) and ``summary.json`` (rows, best point, and
``provenance``: what the best point's scores were measured on — samples, references and their
identity, feature networks, the sampler and its NFE per image, the guidance and scale, the
seeds, the ldmlab version; every row carries its own provenance columns too).
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ldmlab.commands.checkpoint import open_ldm
from ldmlab.commands.cli import command
from ldmlab.commands.finish import finish, run_dir
from ldmlab.config.settings import EvaluateSettings
from ldmlab.evaluation.columns import PROVENANCE
from ldmlab.evaluation.grid import sampler_grid
from ldmlab.evaluation.guidance_grid import guidance_grid
from ldmlab.evaluation.reference import check_counts, load_reference
from ldmlab.evaluation.sweep import check_seeds, check_select_by, check_settings, grid_sweep, select_best
from ldmlab.evaluation.sweep_files import write_sweep
from ldmlab.guidance.inputs import guided_condition
from ldmlab.models.restore import build_sampler, stored_datamodule


def evaluate(cfg: DictConfig) -> Path:
    scales = check_settings(cfg.guidance_scales, cfg.num_samples, cfg.batch_size)
    seeds = check_seeds(cfg.seeds)
    grid = {axis: values for axis, values in OmegaConf.to_container(cfg.grid, resolve=True).items()
            if values is not None} if cfg.get("grid") else {}
    guidance = instantiate(cfg.guidance)
    guidance_axes = grid.pop("guidance", None)
    guidances = guidance_grid(guidance, guidance_axes)
    path, module = open_ldm(cfg)
    samplers = sampler_grid(build_sampler(cfg.get("sampler"), module), grid, module.schedule.num_timesteps,
                            horizon=module.horizon)
    datamodule = instantiate(cfg.data) if cfg.get("data") else stored_datamodule(path)
    reference, dataset = load_reference(datamodule, cfg.reference_split, cfg.num_reference)
    evaluator = instantiate(cfg.metrics)(reference=reference)
    check_counts(evaluator, cfg.num_samples)
    condition = guided_condition(module.ema.shadow["conditioner"], guidance, cfg.num_samples,
                                 class_label=cfg.class_label, source=dataset)
    check_select_by(cfg.select_by, evaluator.metric_names(labelled="label" in condition))
    rows = grid_sweep(module, evaluator, condition, guidance, scales, cfg.num_samples, samplers=samplers,
                      seeds=seeds, batch_size=cfg.batch_size, use_ema=cfg.use_ema, guidances=guidances)

    title = f"{guidance.name} sweep of {path.parent.parent.name}/{path.name}"  # <run>/checkpoints/<file>
    cells, files = write_sweep(rows, run_dir() / "guidance_sweep", title)
    metric, best = select_best(cells, cfg.select_by)
    folder = finish(cfg, {
        "task": "evaluate", "checkpoint": str(path), "num_samples": cfg.num_samples,
        "num_reference": len(reference), "reference": reference.name, "seeds": seeds,
        "guidance": {"name": guidance.name, **OmegaConf.to_container(cfg.guidance, resolve=True)},
        "sampler": OmegaConf.to_container(cfg.sampler) if cfg.get("sampler") else "checkpoint's",
        "grid": {**grid, "guidance": guidance_axes} if guidance_axes else grid,
        "provenance": {**{key: best[key] for key in PROVENANCE if key in best}, "seeds": seeds,
                       "sampler": {key: value for key, value in best.items()
                                   if key == "sampler" or key.startswith("sampler.")},
                       "guidance": best["guidance"], "guidance_scale": best["guidance_scale"]},
        "rows": cells, "rows_per_seed": rows, "best": {"select_by": metric, **best},
        "files": {name: file.name for name, file in files.items()},  # in the run dir
    })
    where = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float | int) else f"{k}={v}"
                      for k, v in best.items() if k == "sampler" or k.startswith(("sampler.", "guidance.")))
    print(f"best {guidance.name} scale by {metric}: s={best['guidance_scale']:g} with {where} "
          f"({metric}={best[metric]:.4g}); wrote {files['csv']} and {files['plot']}")
    return folder


main = command(evaluate, "evaluate", EvaluateSettings)

if __name__ == "__main__":
    main()
