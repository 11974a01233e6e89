"""The one way tfrs_movies reports progress: a ``Log`` callable that takes one line.

Library functions take ``log: Log = print_line`` so that callers (the CLI, sweeps, tests) can
redirect or silence progress without touching global logging configuration.
"""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def print_line(message: str) -> None:
    """Prints one progress line to stdout, flushed (progress must show up in piped logs)."""
    print(message, flush=True)


def silent(message: str) -> None:
    """Discards a progress line (for callers that want no output)."""
