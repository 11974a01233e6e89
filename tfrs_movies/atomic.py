"""Atomic file writes: a reader, or a crash, never sees a half-written file.

The one writer for every file the package leaves behind that is read again (run metadata, sweep
and tuning tables, reports, plots). It lives outside :mod:`tfrs_movies.rundir` because sweeps and
analyses write outside run directories too, and it needs nothing beyond the standard library.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path``, flushes it, and renames it into place.

    ``os.replace`` within one folder is atomic on POSIX: ``path`` holds either its old bytes or
    all of ``data``. The temporary file is named ``.<name>.tmp-<pid>-<random>`` and removed if the
    write fails; it is created with mode 0o666 less the umask, as ``open`` would (``mkstemp``'s
    0o600 would make run files unreadable to other users).

    Args:
        path: the file to write; its folder is created if needed.
        data: text (written as UTF-8) or bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
            stream.flush()
            # On disk before the rename, so a power cut cannot leave an empty file in its place.
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, value: Any) -> None:
    """Writes ``value`` as JSON indented by 2 with a final newline, atomically.

    Numbers JSON cannot name (numpy scalars) are written as floats.

    Args:
        path: the file to write.
        value: a JSON-serializable value.
    """
    write_atomic(path, json.dumps(value, indent=2, default=float) + "\n")
