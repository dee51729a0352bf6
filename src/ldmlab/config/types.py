"""A composed config checked against the types the code expects, before anything runs.

Where a key's type comes from: a node with ``_target_`` → the target's signature (a class's
``__init__``, and its bases' while the signature passes ``**kwargs`` on); a command's own keys →
its settings table (a ``TypedDict``; a nested ``TypedDict`` types a sub-node and, where the node
has a ``_target_``, overrides the target's annotation: the command transforms that value first).
An empty string is refused where a string is expected (unless the key's shipped value or
default is one): it is a blank left by mistake, and as a path it means the current directory.
Checked: ``int`` (not ``bool``, not ``1.5``), ``float`` (finite), ``bool``, ``str``, ``None``, ``Literal``,
unions, lists/tuples/mappings of those, paths (a string) and the count aliases ``PositiveInt`` /
``NonNegativeInt`` (an ``AtLeast`` bound). Anything else (a class, ``Callable``, ``Any``) is left to
the code. A value that comes from ``${other.key}`` is reported under ``other.key``.
"""

from __future__ import annotations

import collections.abc as abc
import enum
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ldmlab.utils.errors import ConfigError


@dataclass(frozen=True)
class AtLeast:
    """``Annotated`` bound: the value is ≥ ``minimum`` (> it when ``strict``)."""

    minimum: int | float
    strict: bool = False

    def admits(self, value: int | float) -> bool:
        return value > self.minimum if self.strict else value >= self.minimum

    def __str__(self) -> str:
        return f"{'>' if self.strict else '≥'} {self.minimum}"


PositiveInt = Annotated[int, AtLeast(1)]
NonNegativeInt = Annotated[int, AtLeast(0)]
NonNegativeFloat = Annotated[float, AtLeast(0)]
PositiveFloat = Annotated[float, AtLeast(0, strict=True)]

NOT_GIVEN = object()  # ``shipped(key)`` has no value for the key
_INTERPOLATION = re.compile(r"^\$\{(?:oc\.select:)?(\.*)([\w.]+)(?:,[^}]*)?\}$")  # ${a.b}, ${oc.select:a.b,x}
_SEQUENCES = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
_FROM_STRING = (PurePath, os.PathLike, enum.Enum, torch.device, torch.dtype)  # built from a config string
_SPECIAL = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def check_config(cfg: DictConfig, settings: type | None = None,
                 shipped: Callable[[str], Any] = lambda key: NOT_GIVEN) -> None:
    """Raise a ConfigError for the first value of ``cfg`` the code would not accept.

    settings: the command's table of its own keys (a TypedDict), or None. shipped: the value a key
    has as shipped (the fix), ``NOT_GIVEN`` where there is none.
    """
    for key, value, hint, default in _typed_values(cfg, "", _hints(settings) if settings else {}):
        if not accepts(value, hint):
            raise ConfigError(key, f"expected {describe(hint)}, got {_shown(value)}",
                              f"{key}={override_text(_fix_value(hint, shipped(key), default))}")
        if value == "" and hint is not Any and accepts("x", hint) and "" not in (shipped(key), default):
            fix = None if accepts(None, hint) else _fix_value(hint, shipped(key), default)
            raise ConfigError(key, "is an empty string (a path or name left blank, e.g. an unset shell "
                              "variable; as a path it would mean the current directory)",
                              f"{key}={override_text(fix)}")


def _typed_values(node: DictConfig, prefix: str, table: dict) -> Iterator[tuple[str, Any, Any, Any]]:
    """(reported key, value, hint, signature default) of every typed value under ``node``."""
    params = target_params(_target_of(node)) if "_target_" in node else {}
    for key in node:
        if key in _SPECIAL or (not prefix and key == "hydra"):
            continue
        full = f"{prefix}{key}"
        try:
            value = node[key]
        except Exception:  # noqa: BLE001 - a missing (???) or unresolvable value: the code reports it
            continue
        hint, default = params.get(key, (Any, inspect.Parameter.empty))
        sub_table = table.get(key)
        if sub_table is not None and not _is_typed_dict(sub_table):
            hint = sub_table
        if not isinstance(value, DictConfig | ListConfig) or hint is not Any:
            yield _source_key(node, key, full), value, hint, default
        if isinstance(value, DictConfig):
            nested = _hints(sub_table) if _is_typed_dict(sub_table) else {}
            yield from _typed_values(value, full + ".", nested)
        elif isinstance(value, ListConfig):
            for i, item in enumerate(value):
                if isinstance(item, DictConfig):
                    yield from _typed_values(item, f"{full}.{i}.", {})


def _source_key(node: DictConfig, key: str, full: str) -> str:
    """``full``, or the key a plain ``${other.key}`` interpolation takes the value from."""
    raw = OmegaConf.to_container(node, resolve=False).get(key)
    match = _INTERPOLATION.match(raw) if isinstance(raw, str) else None
    if not match:
        return full
    dots, ref = match.groups()
    if not dots:
        return ref
    parent = full.split(".")[:-1]
    return ".".join(parent[: len(parent) - (len(dots) - 1)] + [ref])


def _target_of(node: DictConfig) -> object | None:
    from hydra.utils import get_object

    try:
        return get_object(str(node._target_))
    except Exception:  # noqa: BLE001 - an unknown target: instantiate reports it
        return None


@cache
def target_params(target: object) -> dict[str, tuple[Any, Any]]:
    """name → (annotation, default) of the keywords ``target`` takes (bases' through ``**kwargs``)."""
    if target is None:
        return {}
    functions = ([c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__]
                 if inspect.isclass(target) else [target])
    params: dict[str, tuple[Any, Any]] = {}
    for function in functions:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            break
        hints = _hints(function)
        for name, p in signature.parameters.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in params:
                params[name] = (hints.get(name, Any), p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return params


def _hints(obj: object) -> dict[str, Any]:
    """``obj``'s resolved annotations (with ``Annotated`` extras); unresolvable ones are ``Any``."""
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # noqa: BLE001 - a forward reference the module only imports for type checkers
        hints = {}
        namespace = getattr(inspect.unwrap(obj), "__globals__", {})
        for name, annotation in getattr(obj, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
            except Exception:  # noqa: BLE001
                hints[name] = Any
        return hints


def _is_typed_dict(hint: object) -> bool:
    return isinstance(hint, type) and typing.is_typeddict(hint)


def accepts(value: Any, hint: Any) -> bool:
    """Whether a config value (None, bool, int, float, str, ListConfig, DictConfig) fits ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, typing.TypeVar | str) or hint is inspect.Parameter.empty:
        return True
    if origin is Annotated:
        bounds = [m for m in hint.__metadata__ if isinstance(m, AtLeast)]
        return accepts(value, args[0]) and (value is None or all(b.admits(value) for b in bounds))
    if origin in (Union, types.UnionType):
        return any(accepts(value, member) for member in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # nan and inf are no setting's value (a lr of inf diverges at the first step)
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if _is_typed_dict(hint):
        return isinstance(value, DictConfig | dict)
    container = origin or hint
    if container in _SEQUENCES or container is tuple:
        if not isinstance(value, ListConfig | list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(accepts, value, args))
        return not args or all(accepts(item, args[0]) for item in value)
    if container in _MAPPINGS:
        return isinstance(value, DictConfig | dict) and (len(args) < 2 or all(accepts(v, args[1])
                                                                              for v in value.values()))
    if isinstance(value, DictConfig | ListConfig):
        return True  # a node the target builds from (or a class the config cannot express)
    if isinstance(container, type):
        return isinstance(value, container) or (isinstance(value, str)
                                                and issubclass(container, _FROM_STRING))
    return True  # Callable, Protocol, ...: left to the code


def describe(hint: Any) -> str:
    """``hint`` in words: ``an integer ≥ 1``, ``a number or null``, ``a list of integers``, …"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = [m for m in hint.__metadata__ if isinstance(m, AtLeast)]
        return describe(args[0]) + "".join(f" {b}" for b in bounds)
    if origin in (Union, types.UnionType):
        members = [m for m in args if not _opaque(m)] or list(args)
        members = [m for m in members if not (m is int and float in members)]
        words = list(dict.fromkeys(describe(m) for m in members))
        return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    if origin is Literal:
        values = [override_text(a) for a in args]
        return "one of " + ", ".join(values) if len(values) > 1 else values[0]
    words = {None: "null", type(None): "null", bool: "true or false", int: "an integer",
             float: "a finite number", str: "a string"}
    if hint in words:
        return words[hint]
    if (origin or hint) in (*_SEQUENCES, tuple):
        items = {a for a in args if a is not Ellipsis}
        size = f"{len(args)} " if origin is tuple and Ellipsis not in args else ""
        return f"a list of {size}{_plural(describe(items.pop()))}" if len(items) == 1 else "a list"
    if (origin or hint) in _MAPPINGS or _is_typed_dict(hint):
        return "a mapping"
    return f"a {getattr(hint, '__name__', str(hint))}"


def _opaque(hint: Any) -> bool:
    """A class no config value is (a Tensor, a Strategy object, ...)."""
    return (isinstance(hint, type) and typing.get_origin(hint) is None and not _is_typed_dict(hint)
            and hint not in (bool, int, float, str, type(None), *_SEQUENCES, *_MAPPINGS)
            and not issubclass(hint, _FROM_STRING))


def _plural(words: str) -> str:
    return re.sub(r"\ban? (finite )?(\w+)", r"\1\2s", words)  # a finite number → finite numbers


def _example(hint: Any) -> Any:
    """A value that fits ``hint`` (a fix where nothing is shipped), or NOT_GIVEN."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = [m for m in hint.__metadata__ if isinstance(m, AtLeast)]
        base = _example(args[0])
        if base is NOT_GIVEN or not bounds:
            return base
        least = max([base, *(b.minimum for b in bounds)])
        return least if all(b.admits(least) for b in bounds) else least + 1
    if origin in (Union, types.UnionType):
        return None if type(None) in args else next((e for m in args if (e := _example(m)) is not NOT_GIVEN),
                                                    NOT_GIVEN)
    if origin is Literal:
        return args[0]
    examples = {bool: False, int: 1, float: 1.0, str: "x", type(None): None}
    if hint in examples:
        return examples[hint]
    if (origin or hint) in (*_SEQUENCES, tuple):
        return []
    return NOT_GIVEN


def _fix_value(hint: Any, shipped: Any, default: Any) -> Any:
    """The shipped value if it fits, else the signature's default if it fits, else an example."""
    for candidate in (shipped, default):
        if candidate not in (NOT_GIVEN, inspect.Parameter.empty) and accepts(candidate, hint):
            return candidate
    return _example(hint)


def override_text(value: Any) -> str:
    """``value`` as a Hydra command-line value: null, true, 32, 0.002, abc, 'a b', [1,2]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, ListConfig | list | tuple):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, str):
        return value if re.fullmatch(r"[\w./-]+", value) and value not in ("null", "true", "false") \
            and not re.fullmatch(r"[\d.eE+-]+", value) else "'" + value.replace("'", "\\'") + "'"
    return repr(value)


def _shown(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_yaml(value).strip().replace("\n", "; ") if isinstance(value, DictConfig) \
            else override_text(value)
    return repr(value) if isinstance(value, str) else override_text(value)
