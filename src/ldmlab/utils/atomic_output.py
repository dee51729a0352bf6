"""Write a file so that it is complete or absent: never half-written, never another process's.

The content is written under a temporary name beside the target (same folder, so same filesystem):
``.<stem>.tmp-<pid>-<random hex><suffix>``, unique per process and per call, so two processes
writing into one folder never touch each other's temporary files. Once written it is flushed to
disk (fsync), renamed onto the target (``os.replace``: atomic on POSIX) and the folder's entry is
flushed too. On any failure only the temporary path is removed and the target is left as it was,
SIGTERM included (a job's time limit, ``kill``: while a temporary exists it raises
``SystemExit(143)`` where its default action would end the process at once and leave the
temporary behind). A full disk (ENOSPC, EDQUOT) becomes ``DiskFullError`` naming the target.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
EXIT_SIGTERM = 143  # 128 + SIGTERM, as the shell reports a process it ended


class DiskFullError(OSError):
    """No space left on the device while writing ``filename``; nothing half-written is left."""


def temp_beside(target: Path, suffix: str | None = None) -> Path:
    """A fresh hidden name in ``target``'s folder; it ends with ``suffix`` (default: the target's,
    so writers that choose the format by extension — PNG, ``.npz``, plots — still can)."""
    suffix = target.suffix if suffix is None else suffix
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def fsync(path: Path) -> None:
    """Flush a file's content, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Remove a temporary file or folder this module made (a missing one is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def disk_full(err: BaseException, target: Path) -> BaseException:
    """``DiskFullError`` for an out-of-space ``OSError``, else ``err`` itself."""
    if isinstance(err, OSError) and not isinstance(err, DiskFullError) and err.errno in DISK_FULL:
        return DiskFullError(err.errno, "no space left on the device", str(target))
    return err


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(EXIT_SIGTERM)


@contextmanager
def removed_on_sigterm() -> Iterator[None]:
    """Inside the block SIGTERM raises ``SystemExit(143)``, so ``except``/``finally`` clauses remove
    temporaries. Only where SIGTERM has its default action (a handler someone installed, such as
    Lightning's during training, is kept) and in the main thread (the only one signals reach)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s content to; when the block ends without an
    error it becomes ``target`` (fsynced, renamed, folder fsynced). ``target``'s folder must exist."""
    target = Path(target)
    tmp = temp_beside(target)
    with removed_on_sigterm():
        try:
            yield tmp
            fsync(tmp)
            os.replace(tmp, target)
            fsync(target.parent)
        except BaseException as err:
            remove(tmp)
            cause = disk_full(err, target)
            if cause is err:
                raise
            raise cause from err


def write_file(target: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` then publish it as ``target`` (see ``atomic_file``); returns ``target``."""
    with atomic_file(target) as tmp:
        write(tmp)
    return Path(target)


def write_text(target: Path, text: str) -> Path:
    return write_file(target, lambda tmp: tmp.write_text(text))


def write_json(target: Path, payload: dict) -> Path:
    """``payload`` as indented JSON with sorted keys (anything else as its ``str``)."""
    return write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=str))
