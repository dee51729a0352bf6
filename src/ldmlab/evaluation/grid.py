"""The sampler axes of a sweep: every combination of sampler settings, each as a ready sampler.

A grid is ``{axis: values}`` with axes ``sampler`` (``conf/sampler`` option names) and any
constructor argument of the sampler (``steps``, ``eta``, ``spacing``, ``variance``, …), e.g.
``{"steps": [10, 50, 250], "eta": [0, 1]}``; combinations follow ``itertools.product`` in the
order given (first axis outermost). A point is labelled by ``sampler`` (its option name) and
``sampler.<setting>`` columns, so rows say which sampler drew them even when nothing is swept.
The grid is the ``grid`` field of the ``sweep`` part (``grid`` for ``evaluate``,
``callbacks.guidance_sweep.grid`` in training: the caller installs the part key).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence

from hydra.utils import get_class

from ldmlab.config.conf_dir import load_option, option_of
from ldmlab.evaluation.columns import SAMPLER_PREFIX as PREFIX
from ldmlab.sampling.samplers.base import Sampler
from ldmlab.utils.errors import FieldError, part_key

SAMPLER_AXIS = "sampler"

Point = dict[str, float | int | str]
"""Column → value of one grid point, e.g. ``{"sampler": "ddim", "sampler.steps": 50, "sampler.eta": 0.0}``."""


def settings_of(sampler: Sampler) -> dict[str, object]:
    """The constructor arguments of ``sampler`` as it is configured (``steps``, ``spacing``, …)."""
    names = [name for name in inspect.signature(type(sampler).__init__).parameters if name != "self"]
    return {name: getattr(sampler, name) for name in names if hasattr(sampler, name)}


def sampler_grid(
    base: Sampler, grid: Mapping[str, Sequence] | None, num_timesteps: int, horizon: int | None = None,
) -> list[tuple[Point, Sampler]]:
    """(point, sampler) for every combination of ``grid`` applied to ``base`` (``{}``/None: just
    ``base``; an axis set to None is not swept, a single value is a one-value list), each checked
    against the schedule's ``num_timesteps`` and the model's ``horizon`` T' (``Sampler.timesteps``).
    Bad axes, empty value lists, settings a sampler lacks and steps > T' raise FieldError naming
    the sweep's ``grid.<axis>``."""
    grid = {axis: _as_list(values) for axis, values in (grid or {}).items() if values is not None}
    for axis, values in grid.items():
        if not values:
            raise FieldError("sweep", f"grid.{axis}", f"must be a non-empty list, got {values!r}",
                             f"e.g. {{key}}=[{'ddim,dpmpp' if axis == SAMPLER_AXIS else '10,50'}]")
    base_name = option_of("sampler", base)  # reads conf/sampler once, not once per point
    points = []
    for combination in itertools.product(*grid.values()):
        chosen = dict(zip(grid, combination, strict=True))
        points.append(_build(base, base_name, chosen, (num_timesteps, horizon)))
    return points


def _as_list(values) -> list:
    return [values] if isinstance(values, str | int | float) else list(values)


def _build(
    base: Sampler, base_name: str, chosen: dict, levels: tuple[int, int | None]
) -> tuple[Point, Sampler]:
    name = chosen.pop(SAMPLER_AXIS, None)
    if name is None:
        target, settings, name = type(base), settings_of(base), base_name
    else:
        config = load_option("sampler", str(name), part_key("sweep", f"grid.{SAMPLER_AXIS}"))
        target, settings = get_class(config._target_), {k: v for k, v in config.items() if k != "_target_"}
    unknown = sorted(set(chosen) - set(settings))
    if unknown:
        raise FieldError("sweep", f"grid.{unknown[0]}", f"{unknown[0]!r} is not a setting of the {name} "
                         f"sampler (its settings: {sorted(settings)})",
                         f"sweep one of {sorted(settings)} or drop {{key}}")
    settings |= chosen
    try:
        sampler = _checked(target, settings, levels)
    except FieldError as err:
        if err.part != "sampler" or err.field not in chosen:
            raise
        raise err.rehomed(part_key("sweep", "grid")) from None  # a swept value: named where the grid sets it
    labels = {PREFIX + k: settings[k] for k in ("steps", *chosen) if k in settings}
    return {SAMPLER_AXIS: str(name), **labels}, sampler


def _checked(target: type[Sampler], settings: dict, levels: tuple[int, int | None]) -> Sampler:
    """The sampler of ``settings``, its steps checked against the schedule and the model's horizon."""
    sampler = target(**settings)
    sampler.check(*levels)
    return sampler
