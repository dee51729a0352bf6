"""Files ldmlab writes into a folder it shares with the user (the report in a sweep dir), and which
of them it may replace.

``<folder>/<record>`` (JSON ``{"written_by": "ldmlab", "files": {name: sha256}}``) lists each
file ldmlab wrote there with its content. A file may be replaced only while it is listed with its
current sha256: one the user wrote, edited or put there (or a link, or a folder, under that name)
is never replaced — ``check_replaceable`` refuses in one line naming the caller's key before
anything is written. ``record_written`` lists the files just written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ldmlab.utils.atomic_output import write_json
from ldmlab.utils.errors import ConfigError
from ldmlab.utils.file_fingerprint import file_sha256
from ldmlab.utils.output_dir import file_list

WRITTEN_BY = "ldmlab"


def _listed(record: Path) -> dict[str, str] | None:
    """The record's ``files`` ({} when there is no record); None when a file of that name is not
    an ldmlab record."""
    if not os.path.lexists(record):
        return {}
    try:
        payload = json.loads(record.read_text()) if record.is_file() and not record.is_symlink() else None
    except (OSError, ValueError):
        return None
    ours = isinstance(payload, dict) and payload.get("written_by") == WRITTEN_BY
    return file_list(payload.get("files")) if ours else None


def foreign(folder: Path, names: Sequence[str], record: str) -> list[str]:
    """Which of ``names`` (and the record) exist in ``folder`` without being ldmlab's, unchanged."""
    listed = _listed(folder / record)
    found = [record] if listed is None else []
    for name in names:
        path = folder / name
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()
                                      or (listed or {}).get(name) != file_sha256(path)):
            found.append(name)
    return found


def check_replaceable(folder: Path, names: Sequence[str], record: str, key: str, fix: str) -> None:
    """Raise ``ConfigError(key, ..., fix)`` if writing ``names`` into ``folder`` would replace a
    file ldmlab did not write (or one changed since it did)."""
    found = foreign(folder, names, record)
    if found:
        raise ConfigError(key, f"{folder} holds {', '.join(found)}, which ldmlab did not write (or which "
                          f"changed since, per {record}); a file ldmlab did not write is never replaced", fix)


def record_written(folder: Path, paths: Iterable[Path], record: str) -> None:
    """Add ``paths`` (files just written into ``folder``) with their sha256 to the record."""
    files = _listed(folder / record) or {}
    files |= {Path(p).name: file_sha256(Path(p)) for p in paths}
    write_json(folder / record, {"written_by": WRITTEN_BY, "files": files})
