"""A folder written as a whole (an export): checked before any work, built beside its target,
swapped in only when complete, and never deleting a file ldmlab did not write.

The folder's manifest (a JSON object at ``<folder>/<manifest>``) lists under ``"files"`` every
other file it holds with its sha256. Replacing a folder is allowed only when every file in it is
listed there with that content (``foreign_files`` is empty): then the old folder is moved aside,
the new one renamed into place and only then the old one removed. Anything else — a file the user
added or edited, a link, a folder with no manifest — refuses with a ``ConfigError`` naming ``key``
(the caller's config key) and a free folder name that works.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ldmlab.utils.atomic_output import disk_full, fsync, remove, removed_on_sigterm, temp_beside, write_json
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.file_fingerprint import file_sha256

FILES = "files"
log = logging.getLogger(__name__)


def free_name(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``<path>_2``, ``<path>_3``, …"""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}_{n}")
    return candidate


def checked_output_dir(value: str | Path, key: str) -> Path:
    """``value`` as a folder ldmlab may create or fill: not a link, not a file, no file among its
    parents, its nearest existing parent writable. Otherwise a ``ConfigError`` naming ``key``."""
    folder = Path(value).expanduser()
    if folder.is_symlink():
        raise ConfigError(key, f"{folder} is a symbolic link (to {os.readlink(folder)}); an output folder is "
                          "written itself, never through a link", f"{key}={free_name(folder)}")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(key, f"{folder} is a file, not a folder", f"{key}={free_name(folder)}")
    for parent in folder.absolute().parents:
        if parent.is_dir():
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(key, f"{parent} is not writable, so {folder} cannot be created in it",
                                  f"{key}={free_name(Path.home() / folder.name)}")
            break
        if os.path.lexists(parent):
            rest = folder.absolute().relative_to(parent)
            raise ConfigError(key, f"{folder} lies under {parent}, which is a file, not a folder",
                              f"{key}={free_name(parent) / rest}")
    return folder


def file_list(files: object) -> dict[str, str] | None:
    """``files`` when it is a record's file list (name → sha256, both strings), else None."""
    ok = isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    return files if ok else None


def listed_files(folder: Path, manifest: str) -> dict[str, str]:
    """The manifest's ``"files"`` (relative POSIX path → sha256); empty when unreadable."""
    try:
        files = json.loads((folder / manifest).read_text())[FILES]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return file_list(files) or {}


def foreign_files(folder: Path, manifest: str, limit: int | None = None) -> list[str]:
    """What in ``folder`` ldmlab's manifest does not vouch for (relative paths, in walk order, the
    first ``limit``): every file not listed with its current sha256, every link, and the manifest
    itself when it lists nothing. Only listed files are hashed, so a large foreign tree is cheap."""
    listed = listed_files(folder, manifest)
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()  # walk order: sorted, top-down
        for name in dirs + sorted(files):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if name in dirs and not path.is_symlink() or rel == manifest and listed:
                continue
            vouched = (path.is_file() and not path.is_symlink() and rel in listed  # hash listed files only
                       and listed[rel] == file_sha256(path))
            if not vouched:
                found.append(rel)
                if limit is not None and len(found) >= limit:
                    return found
    return found


def describe(names: list[str], limit: int) -> str:
    """Up to ``limit - 1`` names, then "and more" when there are ``limit``."""
    shown = ", ".join(names[:limit - 1])
    return shown + (" and more" if len(names) >= limit else "")


def _manifest_with_files(folder: Path, manifest: str) -> None:
    """Add ``"files"`` (every other file under ``folder`` → sha256) to the manifest the caller wrote."""
    payload = json.loads((folder / manifest).read_text())
    payload[FILES] = {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*"))
                      if p.is_file() and p != folder / manifest}
    write_json(folder / manifest, payload)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fsync(Path(root) / name)
        fsync(Path(root))


def check_replaceable(target: Path, manifest: str, key: str) -> None:
    """Raise ``ConfigError(key)`` (fix: a free folder name) if ``target`` holds foreign files."""
    foreign = foreign_files(target, manifest, limit=4)
    if foreign:
        raise ConfigError(key, f"{target} holds {describe(foreign, 4)}, not listed with this content in its "
                          f"{manifest}; a file ldmlab did not write is never replaced or deleted",
                          f"{key}={free_name(target)}")


def _swap_in(tmp: Path, target: Path, manifest: str, key: str) -> None:
    """Rename ``tmp`` onto ``target``: directly when ``target`` is absent or an empty folder, else
    by moving the old (fully ldmlab-written) folder aside first and removing it last."""
    checked_output_dir(target, key)  # again: it may have changed while we worked
    if not target.exists() or not any(target.iterdir()):
        os.rename(tmp, target)
        return
    check_replaceable(target, manifest, key)
    old = temp_beside(target, suffix="")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if foreign_files(old, manifest, limit=1):  # something was added while we worked: keep it, whole
        log.warning("kept the previous %s as %s: files were added to it meanwhile", target, old)
        return
    remove(old)


@contextmanager
def atomic_dir(target: Path, manifest: str, key: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target`` to fill, including the JSON object
    ``<manifest>``; when the block ends without an error the manifest gains ``"files"``, everything
    is fsynced and the folder replaces ``target`` (see the module docstring; a ``target`` holding
    foreign files raises ``ConfigError(key)`` and stays as it was). On any error only the
    temporary folder (and parents this call created) are removed."""
    target = Path(target)
    made = [p for p in reversed(target.absolute().parents) if not p.exists()]
    with removed_on_sigterm():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(target, suffix="")
        tmp.mkdir()
        try:
            yield tmp
            _manifest_with_files(tmp, manifest)
            _fsync_tree(tmp)
            _swap_in(tmp, target, manifest, key)
            fsync(target.parent)
        except BaseException as err:
            remove(tmp)
            for parent in reversed(made):
                try:
                    parent.rmdir()
                except OSError:
                    break
            cause = disk_full(err, target)
            if cause is err:
                raise
            raise cause from err
