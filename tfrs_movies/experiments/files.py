"""Atomic file writes for what experiments leave beside runs (tables, reports, PNG plots)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from matplotlib.figure import Figure


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path`` and renames it into place.

    A reader (or a crash) never sees a half-written file: the rename is atomic on POSIX.

    Args:
        path: the file to write; its folder is created if needed.
        data: text (written as UTF-8) or bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_figure(figure: Figure, path: str | Path) -> None:
    """Lays out ``figure`` and writes it as a PNG, atomically (see :func:`write_atomic`).

    Args:
        figure: a matplotlib figure (made with ``Figure()``; no pyplot state involved).
        path: the PNG file to write.
    """
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
