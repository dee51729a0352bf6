"""Lightning's refusal of a ``trainer.*`` knob as one line naming the knob, before any work.

``check_trainer`` builds the Trainer the knobs describe (no loggers or callbacks); when Lightning
refuses (``devices=0``, ``precision=17``, ``strategy=foo``, ``accelerator=gpu`` without a GPU,
...), the culprit is the knob whose reset — to its shipped value, else Lightning's default — lets
the Trainer build, and that value is the fix. Knobs the user changed are tried first. A refusal
no single reset cures is not blamed on a knob: it keeps its traceback.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ldmlab.utils.config_types import NOT_GIVEN, override_text
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.precision import resolve_precision


def check_trainer(node: DictConfig, key: str = "trainer",
                  shipped: Callable[[str], Any] = lambda key: NOT_GIVEN) -> None:
    """Raise ConfigError naming ``<key>.<knob>`` if Lightning refuses the Trainer ``node`` describes.

    shipped: a key's shipped value (``NOT_GIVEN`` where none)."""
    target = get_class(str(node._target_))
    knobs = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}
    refusal = _refusal(target, knobs)
    if refusal is None:
        return
    defaults = {name: p.default for name, p in inspect.signature(target).parameters.items()}
    changed = sorted(knobs, key=lambda knob: shipped(f"{key}.{knob}") == knobs[knob])
    for knob in changed:
        for candidate in (shipped(f"{key}.{knob}"), defaults.get(knob, NOT_GIVEN)):
            if candidate in (NOT_GIVEN, inspect.Parameter.empty) or candidate == knobs[knob]:
                continue
            if _refusal(target, {**knobs, knob: candidate}) is None:
                raise ConfigError(f"{key}.{knob}", f"Lightning refuses {override_text(knobs[knob])} "
                                  f"({refusal})", f"{key}.{knob}={override_text(candidate)}") from None
    raise refusal


def _refusal(target: type, knobs: dict) -> Exception | None:
    """The exception building ``target(**knobs)`` raises (``precision: auto`` resolved as training
    does), or None; Lightning's notes and warnings are silenced."""
    precision = resolve_precision(knobs.get("precision"), knobs.get("accelerator", "auto"))
    knobs = {**knobs, "precision": precision}
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target(**knobs, logger=False)
    except Exception as err:  # noqa: BLE001 - blamed on a knob only if resetting it cures it
        return err
    finally:
        logging.disable(previous)
    return None
