"""The guidance axes of a sweep: every combination of guidance settings, each as a ready guidance.

A guidance grid is ``{setting: values}`` over the settings of the configured guidance's
``with_settings`` (interval guidance: ``sigma_low``, ``sigma_high``), e.g.
``{"sigma_high": [2, 5, 10]}``; combinations follow ``itertools.product`` in the order given
(first axis outermost). A point is labelled by ``guidance.<setting>`` columns. The grid is the
``grid.guidance`` field of the ``sweep`` part (``grid.guidance`` for ``evaluate``,
``callbacks.guidance_sweep.grid.guidance`` in training: the caller installs the part key).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from ldmlab.evaluation.columns import GUIDANCE_PREFIX as PREFIX
from ldmlab.evaluation.grid import Point
from ldmlab.guidance.base import Guidance
from ldmlab.utils.errors import FieldError, part_key

FIELD = "grid.guidance"


def guidance_grid(guidance: Guidance, axes: Mapping[str, Sequence] | None) -> list[tuple[Point, Guidance]]:
    """(point, guidance) for every combination of ``axes`` applied with ``guidance.with_settings``
    (``{}``/None: ``[({}, guidance)]``; a setting set to None is not swept, a single value is a
    one-value list). A guidance without ``with_settings``, unknown settings, bad values and empty
    lists raise FieldError naming the sweep's ``grid.guidance.<setting>`` (a non-mapping:
    ``grid.guidance``)."""
    if not isinstance(axes, Mapping | None):
        raise FieldError("sweep", FIELD, f"must map guidance settings to values, got {axes!r}",
                         "e.g. {key}={} or +{key}.sigma_high=[2,5,10]")
    axes = {setting: _as_list(values) for setting, values in (axes or {}).items() if values is not None}
    if not axes:
        return [({}, guidance)]
    if not hasattr(guidance, "with_settings"):
        at = part_key("guidance")  # the group override of the configured guidance
        group = "guidance" if at == "guidance" else f"guidance@{at}"
        raise FieldError("sweep", f"{FIELD}.{next(iter(axes))}",
                         f"the {guidance.name} guidance has no settings to sweep",
                         f"use {group}=interval (sigma_low, sigma_high) or drop {{key}}")
    for setting, values in axes.items():
        if not values:
            raise FieldError("sweep", f"{FIELD}.{setting}", f"must be a non-empty list, got {values!r}",
                             "e.g. +{key}=[2,5,10]")
    points = []
    for combination in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combination, strict=True))
        points.append(({PREFIX + k: v for k, v in chosen.items()}, _with(guidance, chosen)))
    return points


def _as_list(values) -> list:
    return [values] if isinstance(values, str | int | float) else list(values)


def _with(guidance: Guidance, chosen: dict) -> Guidance:
    """``guidance.with_settings(**chosen)``; its errors named where the grid sets the value."""
    try:
        return guidance.with_settings(**chosen)
    except FieldError as err:
        if err.part != "guidance":
            raise
        if err.field in chosen:  # a swept value (or an unknown setting): named where the grid sets it
            raise err.rehomed(part_key("sweep", FIELD)) from None
        swept = ", ".join(f"{k}={v}" for k, v in chosen.items())  # a configured setting the swept ones break
        configured = f"{err.key}={getattr(guidance, err.field, '...')}"
        raise FieldError("sweep", f"{FIELD}.{next(iter(chosen))}",
                         f"{swept} leaves the configured {err.key} invalid ({err.problem})",
                         f"sweep values that fit {configured}, or change {err.key}") from None
