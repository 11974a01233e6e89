"""Low-level text checks shared by the MovieLens readers: byte-order marks, field counts, headers.

Each check raises a :class:`~tfrs_movies.errors.DataError` naming the file, the line and what a
line should hold, and guesses the separator a wrongly delimited line uses.
"""

from __future__ import annotations

import codecs

from tfrs_movies.errors import DataError

SEPARATOR_NAMES = {"\t": "tab", ",": "comma", "|": "'|'", "::": "'::'", ";": "';'"}


def strip_bom(data: bytes, encoding: str) -> tuple[bytes, str]:
    """Removes a UTF-8 byte-order mark, which also says the text is UTF-8.

    Editors on Windows add one when re-saving a file; read as ISO-8859-1 it would become part of
    the first id (``'ï»¿196'``).

    Args:
        data: the start of a file, or all of it.
        encoding: the layout's encoding.

    Returns:
        ``(data without the mark, encoding to decode it with)``.
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :], "utf-8"
    return data, encoding


def guess_separator(line: str, expected: int) -> str | None:
    """The name of a separator that splits ``line`` into ``expected`` fields, if any."""
    for separator, name in SEPARATOR_NAMES.items():
        if len(line.split(separator)) == expected:
            return name
    return None


def check_field_count(
    fields: list[str], line: str, separator: str, expected: int, where: str, number: int, what: str
) -> None:
    """Raises unless a line has exactly ``expected`` fields.

    Args:
        fields: the line split into fields.
        line: the line's text (to guess the separator it really uses).
        separator: the separator the layout uses.
        expected: the number of fields a line must have.
        where: the file, as named in messages.
        number: 1-based line number.
        what: what a line holds, for the message.

    Raises:
        DataError: too few or too many fields; says which separator the line seems to use.
    """
    if len(fields) == expected:
        return
    guess = guess_separator(line, expected)
    hint = f"; the line looks {guess}-separated" if guess else ""
    separator_name = SEPARATOR_NAMES.get(separator, repr(separator))
    raise DataError(
        f"expected {expected} {separator_name}-separated fields ({what}), found {len(fields)}"
        f"{hint}",
        path=where,
        line=number,
    )


def check_header(columns: list[str], required: tuple[str, ...], where: str) -> None:
    """Raises unless a CSV header names every required column.

    Args:
        columns: the header's fields.
        required: the column names the layout needs.
        where: the file, as named in messages.

    Raises:
        DataError: a column is missing (line 1); hints at a header with another separator.
    """
    missing = [c for c in required if c not in columns]
    if not missing:
        return
    header = ",".join(columns)
    guess = guess_separator(header, len(required)) if len(columns) == 1 else None
    hint = f"; the header looks {guess}-separated" if guess and guess != "comma" else ""
    raise DataError(
        f"missing column(s) {', '.join(missing)} in header {header!r}; expected a comma-separated "
        f"header with {', '.join(required)}{hint}",
        path=where,
        line=1,
    )
