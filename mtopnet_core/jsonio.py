"""JSON metadata reading and atomic file writes, for every folder the project writes.

An atomic write goes to a temporary file in the same folder, is flushed to disk, then renamed
over the target: readers see the old file or the new one, never a partial one, and a crash
(or ``kill -9``) mid-write leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["read_json", "write_json_atomic", "atomic_path", "temporary_glob"]


def temporary_glob(name: str) -> str:
    """The glob of :func:`atomic_path`'s temporary files for a file called ``name`` (only a killed
    writer leaves one behind)."""
    return f".{name}.*.tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` (after fsync) on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    prefix, suffix = temporary_glob(path.name).split("*")
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(handle)
    tmp = Path(tmp)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would leave the file unreadable to a team sharing it
    try:
        yield tmp
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, content: dict) -> None:
    """Write JSON atomically (:func:`atomic_path`), keys in the order of ``content``: a file read,
    amended and written again (``model.json`` by an export or a calibration) keeps its order."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2))


def read_json(path: str | os.PathLike, error: type[Exception], what: str) -> dict:
    """Read a JSON metadata file, raising ``error`` with one line naming it if it cannot be read.

    Parameters
    ----------
    path : path-like
    error : type of Exception
        Raised (from the reading error) when the file is unreadable or not JSON.
    what : str
        What the file is, for the message ("metadata", "model metadata", ...).
    """
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from exc
