"""PNG figures of experiments, written atomically (see :func:`tfrs_movies.atomic.write_atomic`)."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from tfrs_movies.atomic import write_atomic


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
