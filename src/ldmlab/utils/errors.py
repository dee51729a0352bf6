"""The exception types for bad user input; each message names a config key and its fix.

Reusable parts (a sampler, a schedule, a guidance, a data module, ...) know their own fields, not
where a config keeps them: they raise ``FieldError(part, field, problem, fix)``. The layer that
builds parts from a config installs where each part lives (``use_part_keys``, e.g.
``{"schedule": "diffusion.schedule"}``; a sweep maps ``sampler`` to its grid), and the message names
the full key. A part without an entry is keyed by its own name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

_PART_KEYS: ContextVar[Mapping[str, str]] = ContextVar("ldmlab_part_keys", default=MappingProxyType({}))


class ConfigError(ValueError):
    """Invalid configuration or input data; the message names the config key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


class DivergedError(ConfigError):
    """Training produced NaN/Inf (loss, weights, EMA, optimiser state or monitored metric);
    ``key`` is the learning rate to lower. Nothing non-finite is written."""


class DataError(ConfigError):
    """A bad input file met while loading data (corrupt image, ...), on one line.

    Survives a DataLoader worker: torch re-raises a worker's exception as
    ``type(formatted_traceback)``; that one-argument form recovers the original message
    from the traceback's last line.
    """

    def __init__(self, key: str, problem: str | None = None, fix: str | None = None) -> None:
        if problem is None and fix is None:  # re-raised by torch from a worker process
            message = key.rstrip().splitlines()[-1].split(f"{type(self).__name__}: ", 1)[-1]
            self.key = message.split(": ", 1)[0]
            ValueError.__init__(self, message)
        else:
            super().__init__(key, " ".join(str(problem).split()), " ".join(str(fix).split()))


def part_key(part: str, field: str | None = None) -> str:
    """The config key of ``part`` (``field`` of it, when given) under the installed part keys."""
    prefix = _PART_KEYS.get().get(part, part)
    return prefix if field is None else f"{prefix}.{field}" if prefix else field


def use_part_keys(keys: Mapping[str, str]) -> None:
    """Install where each part lives in the running command's config (for this context)."""
    _PART_KEYS.set(dict(keys))


@contextmanager
def part_keys(**keys: str) -> Iterator[None]:
    """Within the block, the parts named here live at the given keys (the others as installed)."""
    token = _PART_KEYS.set({**_PART_KEYS.get(), **keys})
    try:
        yield
    finally:
        _PART_KEYS.reset(token)


class FieldError(ConfigError):
    """A part's own field is bad: ``field`` of ``part``, its full key found with ``part_key``.

    ``problem`` and ``fix`` may say ``{key}`` (this field's full key) and ``{part}`` (the part's key),
    e.g. ``FieldError("sampler", "steps", f"must be positive, got {steps}", "e.g. {key}=50")``."""

    def __init__(self, part: str, field: str, problem: str, fix: str) -> None:
        key, at = part_key(part, field), part_key(part)
        self.part, self.field, self._texts = part, field, (problem, fix)
        super().__init__(key, _fill(problem, key, at), _fill(fix, key, at))

    def rehomed(self, at: str) -> FieldError:
        """The same error for the part living at ``at`` (e.g. a sampler built from a sweep's grid)."""
        with part_keys(**{self.part: at}):
            return FieldError(self.part, self.field, *self._texts)


def _fill(text: str, key: str, at: str) -> str:
    return str(text).replace("{key}", key).replace("{part}", at)
