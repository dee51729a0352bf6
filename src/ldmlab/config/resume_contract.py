"""A resumed run is the run that was started, or it refuses.

The config stored in the checkpoint and the new one are compared key by key (flattened, dotted).
A key may differ when it is on ``RESUMABLE_CHANGES`` (how long, how loudly, where), when the
resume opts in to it (``resume_changes: [key, ...]``, a key covers the keys below it), or when
its value is an interpolation of such keys only (``${paths.output_dir}/images``, ``max_lr:
${..optimizer.lr}``). Anything else ends the run before any work with one line naming the
changed keys and runnable fixes. ``WORLD_SIZE`` is a pseudo key: the number of ranks (devices
× nodes), stored with every checkpoint and compared once the Trainer knows it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ldmlab.config.renamed import rename_state, renamed_slot
from ldmlab.utils.errors import ConfigError

RESUMABLE_CHANGES = (
    # how long a run goes
    "trainer.max_steps", "trainer.max_epochs", "trainer.min_steps", "trainer.min_epochs",
    "trainer.max_time", "trainer.limit_*_batches",
    # how often it validates and how loudly it reports (validation never moves training's streams)
    "trainer.val_check_interval", "trainer.check_val_every_n_epoch", "trainer.num_sanity_val_steps",
    "trainer.log_every_n_steps", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.profiler", "logger", "callbacks.progress_bar", "callbacks.lr_monitor",
    "callbacks.image_logger", "callbacks.last_checkpoint.every_n_train_steps", "callbacks.throughput",
    # how it spends memory for the same maths (activations recomputed in the backward pass)
    "backbone.gradient_checkpointing",
    # where it reads and writes, and how fast it loads (the order comes from the sampler, not workers)
    "paths", "hydra", "trainer.default_root_dir", "data.num_workers", "data.pin_memory",
    # where its ranks run: their number is compared on its own (WORLD_SIZE)
    "trainer.devices", "trainer.num_nodes",
    # the resume itself, and which of its checkpoints a later stage loads (ldmlab.runs.selection)
    "ckpt_path", "resume_changes", "optimized_metric", "callbacks.model_checkpoint.select_best",
)
"""Keys (``fnmatch`` patterns; a key covers the keys below it) that only change how long or how
loudly a run goes, where it writes, or how it is resumed: a resume may change them freely."""

WORLD_SIZE = "world_size"  # pseudo key of resume_changes: the number of ranks
OPT_IN = "resume_changes"
_SHOWN = 5  # changed keys listed in full in a refusal
_WIDTH = 40  # characters of a value shown
_INTERPOLATION = re.compile(r"\$\{([^${}]+)\}")


@dataclass(frozen=True)
class ResumePoint:
    """What a resume needs of its checkpoint (read once): its path, stored config, parameter
    shapes and number of ranks (``None``: written before the world size was stored)."""

    path: str
    config: dict
    shapes: dict[str, tuple[int, ...]]
    world_size: int | None

    @classmethod
    def of(cls, path: str, checkpoint: Mapping, config_key: str, world_size_key: str) -> ResumePoint:
        """Read ``checkpoint`` (from ``path``); a stored config holding an interpolation is refused:
        training stores its config resolved, and a ``${...}`` compared, shown or suggested as a fix
        would be evaluated by the next command (``${oc.env:SECRET}``)."""
        config = checkpoint.get(config_key) or {}
        interpolated = [key for key, value in flatten(config).items() if _holds_interpolation(value)]
        if interpolated:
            raise ConfigError("ckpt_path", f"{path} stores an interpolation at {interpolated[0]} (its value "
                              "is not shown): training stores its config resolved; ldmlab did not write it",
                              "start fresh with ckpt_path=null, or resume a checkpoint of ldmlab's training")
        states = checkpoint.get("state_dict") or {}
        shapes = {k: tuple(v.shape) for k, v in states.items() if isinstance(v, torch.Tensor)}
        rename_state(shapes)  # the state-dict names of today's module
        world = checkpoint.get(world_size_key)
        if world is None:  # older checkpoints: one RNG state per rank
            rng = [v for k, v in (checkpoint.get("callbacks") or {}).items() if k.startswith("RNGState")]
            world = len(rng[0]["ranks"]) if rng and "ranks" in rng[0] else None
        return cls(path, config, shapes, world)


def _holds_interpolation(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    return isinstance(value, list | tuple) and any(map(_holds_interpolation, value))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists, ``None`` and empty dicts are leaves."""
    if not isinstance(node, Mapping) or not node:
        return {prefix: node} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def covers(pattern: str, key: str) -> bool:
    """``pattern`` names ``key`` or a node above it (``fnmatch`` wildcards per key)."""
    return fnmatchcase(key, pattern) or fnmatchcase(key, pattern + ".*")


def check_config(point: ResumePoint, cfg: DictConfig) -> list[str]:
    """Refuse unless the new config ``cfg`` differs from the stored one only in resumable keys,
    opted-in keys and keys interpolated from those; return the opted-in keys that changed
    (``WORLD_SIZE`` included when opted in: the Trainer checks it)."""
    opted = _opt_in(cfg)
    stored, new, changed, raw = _compared(point, cfg)
    primary = sorted(k for k in changed if not _follows(k, raw, changed))
    refused = [k for k in primary if not any(covers(p, k) for p in (*RESUMABLE_CHANGES, *opted))]
    if refused:
        raise ConfigError("ckpt_path", f"{point.path} was trained with other settings: "
                          + _listing(refused, stored, new), _fixes(refused, stored, new, point.path))
    unchanged = [p for p in opted if p != WORLD_SIZE and not any(covers(p, k) for k in primary)]
    if unchanged:
        key = unchanged[0]
        raise ConfigError(OPT_IN, f"{key} is opted in but does not differ from {point.path}'s "
                          f"config ({_show(_value_under(new, key))})",
                          f"remove it: {OPT_IN}={_override([p for p in opted if p not in unchanged])}")
    return opted


def check_shapes(point: ResumePoint, module: torch.nn.Module, opted: list[str], cfg: DictConfig) -> None:
    """Refuse an opted-in change (of the new config ``cfg``) that changes the network's parameters
    (names or shapes): their stored values cannot be loaded into it."""
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    differ = sorted(k for k in own.keys() & point.shapes.keys() if own[k] != point.shapes[k])
    missing = sorted(point.shapes.keys() - own.keys())
    extra = sorted(own.keys() - point.shapes.keys())
    if not (differ or missing or extra):
        return
    parts = [f"{k} {point.shapes[k]} → {own[k]}" for k in differ[:3]]
    parts += [f"{k} absent now" for k in missing[:2]] + [f"{k} new" for k in extra[:2]]
    more = len(differ) + len(missing) + len(extra) - len(parts)
    listing = ", ".join(parts) + (f" and {more} more" if more > 0 else "")
    keys = [k for k in opted if k != WORLD_SIZE]
    stored, new, changed, raw = _compared(point, cfg)
    leaves = sorted(k for k in changed if any(covers(p, k) for p in keys) and not _follows(k, raw, changed))
    restored = _restored(leaves, stored, new, point.path)
    raise ConfigError(OPT_IN, f"{', '.join(keys)} change the network's parameters ({listing}), so "
                      f"{point.path} cannot be resumed with them (the architecture cannot change on "
                      "resume)", f"start fresh with ckpt_path=null; or {restored} and "
                      f"{OPT_IN}={_override([k for k in opted if k == WORLD_SIZE])}")


def check_world_size(point: ResumePoint, world_size: int, opted: list[str]) -> None:
    """Refuse a different number of ranks unless ``WORLD_SIZE`` is opted in, and an opted-in
    ``WORLD_SIZE`` that did not change."""
    if point.world_size is None or (point.world_size == world_size) == (WORLD_SIZE not in opted):
        return
    if WORLD_SIZE in opted:
        raise ConfigError(OPT_IN, f"{WORLD_SIZE} is opted in but {point.path} was also written by "
                          f"{world_size} rank(s)",
                          f"remove it: {OPT_IN}={_override([p for p in opted if p != WORLD_SIZE])}")
    raise ConfigError("ckpt_path", f"{point.path} was written by {point.world_size} rank(s), this run "
                      f"has {world_size} (trainer.devices × trainer.num_nodes)",
                      f"resume on {point.world_size} rank(s); or start fresh with ckpt_path=null; or "
                      f"continue on {world_size} rank(s), the data order re-derived (not bit-exact; see "
                      f"docs/scaling.md), with {OPT_IN}={_override([*opted, WORLD_SIZE])}")


def _compared(point: ResumePoint, cfg: DictConfig) -> tuple[dict, dict, set[str], Any]:
    """(stored flat, new flat, keys whose values differ, the new config unresolved)."""
    stored, new = flatten(_current_layout(point.config)), flatten(OmegaConf.to_container(cfg, resolve=True))
    changed = {k for k in stored.keys() | new.keys() if stored.get(k, _ABSENT) != new.get(k, _ABSENT)}
    return stored, new, changed, OmegaConf.to_container(cfg, resolve=False)


def _current_layout(config: dict) -> dict:
    """A stored config as today's configs lay it out: stage-2 runs stored before the module took
    its parameterization from the objective also stored it at ``module.parameterization``; those
    stored before the denoiser slot was renamed hold it at ``unet`` and ``module.unet``."""
    config = renamed_slot(config)
    module = config.get("module")
    if not isinstance(module, dict):
        return config
    module = renamed_slot(module)
    if "objective" in module and "parameterization" in module:
        module = {k: v for k, v in module.items() if k != "parameterization"}
    return config | {"module": module}


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _opt_in(cfg: DictConfig) -> list[str]:
    opted = cfg.get(OPT_IN) or []
    if isinstance(opted, str) or not all(isinstance(k, str) and k for k in opted):
        raise ConfigError(OPT_IN, f"must be a list of config keys, got {opted!r}",
                          f"e.g. {OPT_IN}=[module.optimizer.lr]")
    return list(opted)


def _follows(key: str, raw: Any, changed: set[str]) -> bool:
    """``key``'s new value is an interpolation of keys that changed too (judged on their own), or of
    Hydra's runtime: e.g. ``module.autoencoder.encoder.ch`` of ``module.autoencoder: ${autoencoder}``,
    ``callbacks.image_logger.out_dir: ${paths.output_dir}/images``, ``max_lr: ${..optimizer.lr}``."""
    parts, node = key.split("."), raw
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
        if isinstance(node, str) and (refs := _INTERPOLATION.findall(node)):
            sources = [_absolute(ref, parts[:depth]) for ref in refs]
            if len(refs) == 1 and node.strip() == "${" + refs[0] + "}" and depth + 1 < len(parts):
                sources = [".".join([sources[0], *parts[depth + 1:]])]  # a whole node interpolated
            return any(s.startswith("hydra.") or any(covers(s, k) for k in changed) for s in sources)
    return False


def _absolute(ref: str, parent: list[str]) -> str:
    """An interpolation's target as a dotted key: ``..optimizer.lr`` inside ``module.scheduler``
    → ``module.optimizer.lr``; resolver calls (``hydra:runtime.output_dir``) → ``hydra.…``."""
    if ":" in ref:
        name, _, arg = ref.partition(":")
        return f"{name}.{arg}" if name == "hydra" else f"resolver:{name}"
    dots = len(ref) - len(ref.lstrip("."))
    if not dots:
        return ref
    base = parent[: len(parent) - dots + 1] if dots > 1 else parent
    return ".".join([*base, ref[dots:]])


def _value_under(flat: dict[str, Any], key: str) -> Any:
    if key in flat:
        return flat[key]
    return {k[len(key) + 1:]: v for k, v in flat.items() if k.startswith(key + ".")} or _ABSENT


def _show(value: Any) -> str:
    text = _override(value) if value is not _ABSENT else "<absent>"
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _listing(keys: list[str], stored: dict, new: dict) -> str:
    shown = [f"{k} {_show(_value_under(stored, k))} → {_show(_value_under(new, k))}" for k in keys[:_SHOWN]]
    rest = keys[_SHOWN:]
    return ", ".join(shown) + (f" and {len(rest)} more ({', '.join(rest[:10])}"
                               + (", …" if len(rest) > 10 else "") + ")" if rest else "")


def _fixes(keys: list[str], stored: dict, new: dict, path: str) -> str:
    return (f"{_restored(keys, stored, new, path)}; or start fresh with ckpt_path=null; or change them on "
            f"purpose with {OPT_IN}={_override(keys)}")


def _restored(keys: list[str], stored: dict, new: dict, path: str) -> str:
    """How to resume with the stored values of the changed leaf ``keys``: their overrides, or (too
    many) the run's own command line."""
    if len(keys) <= _SHOWN:
        return "resume with the run's own values: " + " ".join(_restoring(k, stored, new) for k in keys)
    run_dir = Path(path).resolve().parent.parent
    return f"resume with the overrides the run was started with ({run_dir / '.hydra' / 'overrides.yaml'})"


def _restoring(key: str, stored: dict, new: dict) -> str:
    """The override that gives ``key`` its stored value back (``~key`` removes an added one)."""
    value = _value_under(stored, key)
    if value is _ABSENT:
        return f"~{key}"
    return f"{'+' if _value_under(new, key) is _ABSENT else ''}{key}={_override(value)}"


def _override(value: Any) -> str:
    """``value`` in Hydra's override grammar (``[a,b]``, ``{k:v}``, ``null``, quoted strings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_override(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if re.fullmatch(r"[\w./@+-]+", text) and text not in ("null", "true", "false") else repr(text)
