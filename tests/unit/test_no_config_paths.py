"""No library module spells a config path as the key of a user error (read with ``ast``).

Reusable parts raise ``FieldError(part, field, ...)``; the config layer (``config/part_keys``) says
where each part lives. So the first argument of ``ConfigError`` / ``DataError`` / ``DivergedError``
in the library (every package but ``commands``, ``config``, ``runs``) is never a string that names a
config path such as ``"data.resolution"`` or ``f"loss.{name}"`` -- written in place, or through a
module-level string constant (``KEY = "first_stage.ckpt"``) -- and a ``FieldError``'s part is a
bare name. Keys handed in by the caller (``key``, ``ckpt_key()``, ``part_key(...)``) are fine.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ldmlab"
CONF = SRC.parents[1] / "conf"
CONFIG_LAYER = ("commands", "config", "runs")  # they may spell config keys
KEYED_ERRORS = frozenset({"ConfigError", "DataError", "DivergedError"})
TOP_LEVEL = frozenset({
    "sampler", "guidance", "module", "data", "trainer", "diffusion", "backbone", "first_stage", "conditioner",
    "callbacks", "metrics", "loss", "autoencoder", "paths", "classifier", "noisy_classifier", "grid",
    "optimizer", "logger", "hydra", "sweep",
})

# Sites not yet converted, each owned by another helper of the same restructure, as
# ("<module under src/ldmlab>", "<key text>") pairs; shrink it as they land (empty: all converted).
ALLOWED: set[tuple[str, str]] = set()


def top_level_keys() -> frozenset[str]:
    """The known top-level config keys: the config groups under conf/ and the usual nodes."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("experiment", "debug")}
    return TOP_LEVEL | groups


def looks_like_path(text: str, prefixes: frozenset[str]) -> bool:
    """``text`` (an f-string's parts joined, ``{}`` for each field) starts a dotted config path."""
    match = re.match(r"([a-z_]+)\.", text)
    return bool(match) and match.group(1) in prefixes


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "string"`` assignments."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def _text(arg: ast.expr, constants: dict[str, str]) -> str | None:
    """The literal text of a key argument (constants substituted, ``{}`` for other fields), or None."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.Name):
        return constants.get(arg.id)
    if isinstance(arg, ast.JoinedStr):
        parts = []
        for value in arg.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name) \
                    and value.value.id in constants:
                parts.append(constants[value.value.id])
            else:
                parts.append("{}")
        return "".join(parts)
    return None


def config_paths(source: str, prefixes: frozenset[str]) -> list[tuple[int, str]]:
    """(line, key text) of each user error in ``source`` keyed by a spelled config path."""
    tree = ast.parse(source)
    constants = _constants(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        text = _text(node.args[0], constants)
        if text is None:
            continue
        if name in KEYED_ERRORS and looks_like_path(text, prefixes) or name == "FieldError" and "." in text:
            found.append((node.lineno, text))
    return found


def library_modules() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).parts[0] not in CONFIG_LAYER]


def test_no_library_module_spells_a_config_path_as_an_error_key():
    prefixes = top_level_keys()
    offenders = []
    for path in library_modules():
        rel = path.relative_to(SRC).as_posix()
        for line, text in config_paths(path.read_text(), prefixes):
            if (rel, text) not in ALLOWED:
                offenders.append(f"{rel}:{line}: {text!r}")
    assert not offenders, "raise FieldError(part, field, ...) instead:\n" + "\n".join(offenders)


def test_the_allow_list_holds_only_sites_that_still_exist():
    prefixes = top_level_keys()
    present = {(p.relative_to(SRC).as_posix(), text) for p in library_modules()
               for _, text in config_paths(p.read_text(), prefixes)}
    assert not ALLOWED - present, f"converted: drop from ALLOWED {sorted(ALLOWED - present)}"


def test_the_check_flags_spelled_paths_and_passes_part_keys():
    source = '''
KEY = "first_stage.ckpt"
PART = "noisy_classifier"
def f(name, key):
    raise ConfigError("data.resolution", "bad", "fix")
    raise DataError(f"loss.{name}", "bad", "fix")
    raise DivergedError(KEY, "bad", "fix")
    raise errors.ConfigError(f"{KEY}.x", "bad", "fix")
    raise FieldError("data.root", "x", "bad", "fix")
    raise ConfigError(key, "bad", "fix")
    raise ConfigError(f"{key}.{name}", "bad", "fix")
    raise ConfigError("resume_changes", "bad", "fix")
    raise ConfigError(part_key("data", "root"), "bad", "fix")
    raise FieldError(PART, "dropout", "bad", "e.g. {key}=0.1")
'''
    assert [line for line, _ in config_paths(source, top_level_keys())] == [5, 6, 7, 8, 9]
