"""A value a config node's class refuses, as one line naming its key.

A knob is a direct value of a config node with ``_target_`` (``trainer.devices``,
``callbacks.model_checkpoint.save_top_k``, ``module.ema_decay``). When the class refuses the
values it is built with, the culprit is the knob whose reset — to its shipped value, else the
class's default; a knob the class does not take: left out — lets the node build, and that value
is the fix. Only knobs the user changed
(the shipped config builds) are tried. A refusal no single reset cures is not blamed on a knob:
it keeps its traceback.

- ``check_trainer``: the Trainer the ``trainer`` knobs describe, built before any work; any
  exception is a refusal (``devices=0``, ``precision=17``, ``strategy=foo``, ``max_steps=-5``).
- ``refused_knob``: any node whose instantiation failed with Lightning's
  ``MisconfigurationException``, a ``ValueError`` or ``TypeError`` raised by its class
  (``callbacks.model_checkpoint.save_top_k=-5``, ``module.ema_decay=1.5``,
  ``+callbacks.model_checkpoint.foo=1``).
- ``named_knob``: Lightning's refusal once fitting starts, blamed on the changed knob it names.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import re
import warnings
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ldmlab.config.types import NOT_GIVEN, override_text, target_params
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.precision import resolve_precision

Shipped = Callable[[str], Any]  # a key's shipped value (``NOT_GIVEN`` where none)
REFUSALS = (MisconfigurationException, ValueError, TypeError)  # what a class raises for a value it refuses
_NODE = re.compile(r"full_key: (\S+)")
_BACKTICKED = re.compile(r"`(\w+)`")  # how Lightning's messages name a knob


def check_trainer(node: DictConfig, key: str = "trainer", shipped: Shipped = lambda key: NOT_GIVEN) -> None:
    """Raise ConfigError naming ``<key>.<knob>`` if Lightning refuses the Trainer ``node`` describes."""
    target = get_class(str(node._target_))
    knobs = _knobs(node)

    def build(values: dict) -> None:
        precision = resolve_precision(values.get("precision"), values.get("accelerator", "auto"))
        built = {k: instantiate(v) if isinstance(v, dict) and "_target_" in v else v  # a strategy node
                 for k, v in values.items()}
        target(**{**built, "precision": precision}, logger=False)

    refusal = _refusal(build, knobs)
    if refusal is not None:
        raise _culprit(build, knobs, refusal, key, shipped, target) or refusal


def refused_knob(err: BaseException, cfg: DictConfig, shipped: Shipped,
                 source: Callable[[str], str] = lambda key: key) -> ConfigError | None:
    """The ConfigError naming the knob of ``cfg`` behind ``err`` (Hydra's failure to instantiate
    a node of ``cfg`` because its class refused a value: ``REFUSALS``), or None. ``source``: the
    key a node is set under (``module.backbone`` → ``backbone`` where one interpolates the other)."""
    cause = err
    while isinstance(cause, InstantiationException):
        cause = cause.__cause__
    node_key = _NODE.search(str(err)) if isinstance(err, InstantiationException) else None
    if not isinstance(cause, REFUSALS) or isinstance(cause, ConfigError) or node_key is None:
        return None
    key = node_key.group(1)
    try:
        node = OmegaConf.select(cfg, key, default=None)
        knobs = _knobs(node) if isinstance(node, DictConfig) and "_target_" in node else None
    except Exception:  # noqa: BLE001 - a node that does not resolve: not a knob's fault
        return None
    if knobs is None:
        return None
    target = get_class(str(node._target_))
    special = {k: v for k, v in OmegaConf.to_container(node, resolve=False).items() if k.startswith("_")}

    def build(values: dict) -> None:
        instantiate({**special, **values})

    refusal = _refusal(build, knobs)  # the node as configured fails again: it is the one that failed
    return _culprit(build, knobs, refusal, source(key), shipped, target) if refusal else None


def named_knob(err: BaseException, node: DictConfig, key: str, shipped: Shipped) -> ConfigError | None:
    """Lightning's refusal of a knob it can only judge once fitting starts (``val_check_interval``
    above the number of training batches): for ``err`` raised in Lightning's own code, the
    ConfigError naming the first knob of ``node`` its message names in backticks that the user
    changed, its shipped value the fix; else None."""
    if not isinstance(err, REFUSALS) or isinstance(err, ConfigError) or not _raised_by_lightning(err):
        return None
    knobs = _knobs(node)
    for knob in _BACKTICKED.findall(str(err)):
        given = shipped(f"{key}.{knob}")
        if knob in knobs and given is not NOT_GIVEN and given != knobs[knob]:
            return ConfigError(f"{key}.{knob}", f"Lightning refuses {override_text(knobs[knob])} "
                               f"({' '.join(str(err).split())})", f"{key}.{knob}={override_text(given)}")
    return None


def _raised_by_lightning(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and any(name in tb.tb_frame.f_code.co_filename
                                  for name in ("/pytorch_lightning/", "/lightning_fabric/"))


def _knobs(node: DictConfig) -> dict:
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}


def _culprit(build: Callable[[dict], Any], knobs: dict, refusal: Exception, key: str, shipped: Shipped,
             target: type) -> ConfigError | None:
    """The ConfigError naming the one changed knob whose reset lets ``build`` succeed, or None; a
    knob the class does not take is reset by leaving it out."""
    params = target_params(target)
    cause = refusal.__cause__ if isinstance(refusal, InstantiationException) else refusal
    problem = " ".join(str(cause).split())
    for knob in (k for k in knobs if shipped(f"{key}.{k}") != knobs[k]):
        given = shipped(f"{key}.{knob}")
        if knob not in params:
            if _refusal(build, {k: v for k, v in knobs.items() if k != knob}) is None:
                close = difflib.get_close_matches(knob, params, n=1)
                return ConfigError(f"{key}.{knob}", f"{target.__name__} takes no argument {knob!r} "
                                   f"({problem})", f"drop +{key}.{knob} from the command line"
                                   + (f" (did you mean {key}.{close[0]}?)" if close else ""))
            continue
        for candidate in (given, params[knob][1]):
            if candidate in (NOT_GIVEN, inspect.Parameter.empty) or candidate == knobs[knob]:
                continue
            if _refusal(build, {**knobs, knob: candidate}) is None:
                added = "+" if given is NOT_GIVEN else ""  # a knob the shipped config does not set
                return ConfigError(f"{key}.{knob}", f"{target.__name__} refuses {override_text(knobs[knob])} "
                                   f"({problem})", f"{added}{key}.{knob}={override_text(candidate)}")
    return None


def _refusal(build: Callable[[dict], Any], knobs: dict) -> Exception | None:
    """The exception ``build(knobs)`` raises, or None; the notes and warnings of building are
    silenced."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build(knobs)
    except Exception as err:  # noqa: BLE001 - blamed on a knob only if resetting it cures it
        return err
    finally:
        logging.disable(previous)
    return None
