"""Errors that carry a message meant for a person.

The CLI prints ``str(error)`` of any :class:`TfrsMoviesError` as one line on stderr and exits
with status 2, without a traceback. Library callers can catch the specific subclasses.
"""

from __future__ import annotations


class TfrsMoviesError(Exception):
    """Base class: the message says what was wrong and how to fix it."""


class DataError(TfrsMoviesError, ValueError):
    """Input data is missing, malformed or inconsistent.

    Args:
        message: what was wrong and what was expected.
        path: the file the problem was found in, if any.
        line: 1-based line number in that file, if it applies.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)


class ConfigError(TfrsMoviesError, ValueError):
    """A configuration value, key or file is invalid."""


class ArtifactError(TfrsMoviesError):
    """A run directory is missing files, corrupt, or from incompatible library versions."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (white space folded), or its type name if it has none.

    The CLI prints ``error: {one_line(e)}``; sweeps record it per failed run.
    """
    return " ".join(str(error).split()) or type(error).__name__
