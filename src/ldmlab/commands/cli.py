"""The entry points' shared layer: where the configs live, the error contract and ``command``
(a console entry point from a command's body).

Bad user input ends a command with exactly one ``error: ...`` line on stderr naming the config
key and its fix, and exit status 2 — whether Hydra rejects the command line (unknown group
option, typo'd key, bad override syntax), a value has the wrong type (checked against the code's
annotations before the command runs), or ldmlab rejects a value while running. Anything else
is a bug and keeps its full traceback. Hydra flags that would unpickle a file are refused.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra._internal.utils import get_args_parser
from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ldmlab.config import part_keys
from ldmlab.config.conf_dir import CONF_DIR
from ldmlab.config.shipped import shipped_source, shipped_value
from ldmlab.config.trainer_knobs import refused_knob
from ldmlab.config.types import check_config
from ldmlab.runs.fresh_dir import RunDirTaken
from ldmlab.runs.multirun import ended_with_failures, in_multirun, run_job, stopped_with_failures
from ldmlab.utils.atomic_output import DiskFullError
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.pretrained import WeightsUnavailableError

USER_ERRORS = (ConfigError, WeightsUnavailableError)
OUTPUT_KEYS = ("out", "sweep_dir", "paths.cache_dir", "paths.log_dir")  # where commands write, inner first
EXIT_USER_ERROR = 2
PICKLE_FLAGS = ("experimental_rerun",)  # Hydra's argparse destinations that unpickle a file


def user_error(err: BaseException) -> BaseException | None:
    """The user-facing error behind ``err``: itself if it is one; for a config node that failed
    to instantiate, the user error raised by the class it names, or a ConfigError naming the node
    when the node's keys do not match the class's signature. Anything else: None (a bug)."""
    if isinstance(err, USER_ERRORS):
        return err
    if not isinstance(err, InstantiationException):
        return None
    cause = err.__cause__ or err.__context__
    while isinstance(cause, InstantiationException):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, USER_ERRORS):
        return cause
    if isinstance(cause, TypeError) and _raised_at_call_site(cause):
        node = re.search(r"full_key: (\S+)", str(err))
        key = shipped_source(node.group(1)) if node else "config"
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        if unexpected is None:
            return ConfigError(key, str(cause), f"remove or rename the offending key under {key}")
        field = f"{key}.{unexpected.group(1)}"
        return ConfigError(field, f"{str(cause).split('(')[0].strip()} takes no such argument (an experiment "
                           f"written for another {key} option may set it)",
                           f"drop it with ~{field}, or choose a {key} option that takes it")
    return None


def _raised_at_call_site(err: TypeError) -> bool:
    """True when a TypeError came from calling the target (bad keyword), not from inside it."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return bool(frames) and "hydra" in Path(frames[-1]).parts


def exit_on_user_error(run: Callable, cfg, settings: type | None = None):
    """Check ``cfg``'s types (``settings``: the command's table of its own keys), then run
    ``run(cfg)``; a user error becomes one ``error: ...`` line on stderr and exit 2. In a
    multirun, a failed job is recorded and the sweep goes on (``ldmlab.runs.multirun``)."""
    run = naming_full_disk(naming_refused_knob(type_checked(run, settings)))
    if in_multirun():
        return run_job(run, cfg, user_error)
    try:
        return run(cfg)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        fail(str(cause))


def type_checked(run: Callable, settings: type | None) -> Callable:
    """``run`` after ``check_config`` (fixes: the shipped values of this command)."""
    def wrapped(cfg):
        check_config(cfg, settings, shipped_value)
        return run(cfg)
    return wrapped


def naming_refused_knob(run: Callable) -> Callable:
    """``run`` with a config node its class refused to be built from (Lightning's
    ``MisconfigurationException``, a ``ValueError``, an unknown argument) turned into a
    ``ConfigError`` naming the knob whose reset cures it (``ldmlab.config.trainer_knobs.refused_knob``);
    else unchanged."""
    def wrapped(cfg):
        try:
            return run(cfg)
        except InstantiationException as err:
            culprit = None if user_error(err) is not None else \
                refused_knob(err, cfg, shipped_value, shipped_source)
            if culprit is None:
                raise
            raise culprit from err
    return wrapped


def naming_full_disk(run: Callable) -> Callable:
    """``run`` with a full disk (``DiskFullError``, raised after the half-written file was removed)
    turned into a ``ConfigError`` naming the first of ``OUTPUT_KEYS`` whose folder holds the file;
    a file elsewhere keeps its traceback."""
    def wrapped(cfg):
        try:
            return run(cfg)
        except DiskFullError as err:
            file = Path(err.filename).resolve()
            key = next((k for k in OUTPUT_KEYS if _holds(cfg, k, file)), None)
            if key is None:
                raise
            raise ConfigError(key, f"no space left on the device writing {file} (nothing half-written is "
                              "left, earlier files are intact)",
                              f"free space on that disk, or {key}=<a folder on a disk with room>") from err
    return wrapped


def _holds(cfg, key: str, file: Path) -> bool:
    """Whether the folder at config ``key`` (if set) holds ``file``."""
    folder = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if not isinstance(folder, str) or not folder:
        return False
    return file.is_relative_to(Path(folder).expanduser().resolve())


def fail(message: str, status: int = EXIT_USER_ERROR) -> None:
    """Print ``error: <message>`` as one line on stderr and exit with ``status`` (2: user error)."""
    print("error: " + " ".join(message.split()), file=sys.stderr, flush=True)
    raise SystemExit(status)


def command(body: Callable[[DictConfig], object], config_name: str,
            settings: type | None = None) -> Callable[[], None]:
    """A command's console entry point (``main``): Hydra composes ``config_name`` with the command
    line (``--config-name`` picks another), and ``body(cfg)`` runs under the error contract
    (``exit_on_user_error`` with ``settings``, inside ``run``). The Hydra job is named after
    ``body``'s module, as when that module is run with ``python -m``; the ``@hydra.main`` function
    returns ``body``'s value, which a sweeper optimises."""
    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    @functools.wraps(body)
    def hydra_main(cfg: DictConfig) -> object:
        return exit_on_user_error(body, cfg, settings)  # None: a failed job of a multirun

    def main() -> None:
        run(hydra_main, config_name)

    return main


def run(main: Callable[[], object], config_name: str) -> None:
    """Call a ``@hydra.main`` function; Hydra's own command-line errors
    (multi-line reports, exit 1) become one line with a runnable fix and exit 2. ``config_name``
    is the decorator's default, used to suggest keys when an override names one that does not exist."""
    refuse_pickle_flags(sys.argv[1:])
    part_keys.install()  # errors of reusable parts name ldmlab's config keys
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's exceptions reach us unformatted
    for name in ("pytorch_lightning", "lightning_fabric"):  # progress notes on stdout; stderr is for errors
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                handler.setStream(sys.stdout)
    try:
        main()
    except RunDirTaken as taken:  # before Hydra wrote into a run dir that holds files
        fail(str(taken.error))
    except (HydraException, OmegaConfBaseException) as err:
        if isinstance(err, InstantiationException):
            raise
        fail(describe_hydra_error(err, _config_name(config_name)))
    except Exception as err:
        if (stopped := stopped_with_failures(err)) is None:
            raise
        fail(*stopped)
    except (KeyboardInterrupt, SystemExit) as err:  # a multirun stopped as asked: its jobs recorded
        if (stopped := stopped_with_failures(err)) is None:
            raise
        fail(stopped[0], err.code if isinstance(err, SystemExit) and isinstance(err.code, int) else 130)
    if failures := ended_with_failures():  # a multirun whose jobs did not all complete
        fail(*failures)


def refuse_pickle_flags(argv: list[str]) -> None:
    """Exit 2 if ``argv`` holds a Hydra flag that unpickles a file (``--experimental-rerun FILE``,
    in any spelling argparse accepts: ``--flag=FILE`` or an unambiguous prefix), before Hydra sees it."""
    flags = [option for action in get_args_parser()._actions if action.dest in PICKLE_FLAGS
             for option in action.option_strings]
    for arg in argv:
        name = arg.split("=", 1)[0]
        if len(name) > 2 and name.startswith("--") and any(flag.startswith(name) for flag in flags):
            fail(f"{name}: loads a pickle (a pickle file runs code when loaded), so ldmlab refuses it. "
                 "Fix: rerun with the run's overrides instead (<run_dir>/.hydra/overrides.yaml)")


def _config_name(default: str) -> str:
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg in ("--config-name", "-cn") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config-name="):
            return arg.split("=", 1)[1]
    return default


def describe_hydra_error(err: BaseException, config_name: str) -> str:
    """Hydra's message on one line, with a fix that is itself a valid override where one exists."""
    text = " ".join(str(err).split("Config search path:")[0].split())
    if err.__cause__ is not None:
        text += " (" + " ".join(str(err.__cause__).split()) + ")"
    missing_key = re.search(r"Could not override '([^']+)'\.", text)
    if missing_key and "not in struct" in text:
        key = missing_key.group(1)
        close = closest_key(key, config_keys(config_name))
        value = _override_value(key)
        fix = (f"did you mean {close}={value}?" if close else
               f"check the key's spelling, or use +{key}={value} to add a new key")
        return f"{key}: no such config key in '{config_name}' ({text}). Fix: {fix}"
    missing_option = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if missing_option:
        group, option = missing_option.groups()
        listing = str(err).split("Config search path:")[0]
        options = [line.strip() for line in listing.splitlines() if line.startswith("\t")]
        close = difflib.get_close_matches(option, options, n=1, cutoff=0.0)
        fix = f"use one of {', '.join(options)}, e.g. {group}={close[0]}" if close else "see conf/" + group
        return f"{group}: no option '{option}' ({text}). Fix: {fix}"
    return f"command line: {text}"


def closest_key(key: str, keys: list[str]) -> str | None:
    """The existing key ``key`` most likely misspells: in a node that exists, a sibling with a
    close name (``trainer.max_step`` → ``trainer.max_steps``; ``module.optimizer.betas`` has none:
    a new argument, not ``module.optimizer.lr``); else a close dotted key that is not its ancestor."""
    parent, _, name = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent and k != key]
    if siblings:
        close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.75)
        return (f"{parent}.{close[0]}" if parent else close[0]) if close else None
    close = difflib.get_close_matches(key, [k for k in keys if not key.startswith(k + ".")], n=1, cutoff=0.6)
    return close[0] if close else None


def _override_value(key: str) -> str:
    for arg in sys.argv[1:]:
        if arg.lstrip("+~").split("=", 1)[0] == key and "=" in arg:
            return arg.split("=", 1)[1]
    return "..."


def config_keys(config_name: str) -> list[str]:
    """Every dotted key of ``config_name`` composed with its defaults (for spelling suggestions)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name)
    keys: list[str] = []

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            keys.append(dotted)
            if isinstance(value, dict):
                walk(value, dotted + ".")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return keys
