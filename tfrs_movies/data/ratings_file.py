"""The large MovieLens ratings file, parsed with the pandas C parser (25M lines in seconds)."""

from __future__ import annotations

import codecs
import csv
import io
import re

import numpy as np

from tfrs_movies.data.files import READ_ERRORS, MovieLensFiles
from tfrs_movies.data.layouts import Layout
from tfrs_movies.data.text import check_field_count, check_header, strip_bom
from tfrs_movies.errors import DataError

_DTYPES = ("int64", "int64", "float64", "int64")  # user, movie, rating, timestamp
_LABELS = ("user id", "movie id", "rating", "timestamp")


def read_ratings(
    files: MovieLensFiles, layout: Layout
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Parses the ratings file of a layout.

    Args:
        files: the copy holding the file.
        layout: says the file, separator, header, encoding and rating scale.

    Returns:
        user ids (R,) int64, movie ids (R,) int64, ratings (R,) float32, timestamps (R,) int64,
        and the file line number of the first rating (1, or 2 after a header).

    Raises:
        DataError: empty file, missing header column, wrong number of fields, a value that is
            not a number, or a rating outside the layout's scale; names the file and line.
    """
    import pandas as pd  # deferred: pandas import costs ~0.3 s and is only needed here

    table = layout.ratings
    where = files.display(table.file)
    what = table.description
    first_rating_line = 2 if table.header else 1
    encoding = layout.encoding
    if table.separator == "::":
        # The C parser needs a one-character separator: '::' becomes a tab, in memory.
        data, encoding = strip_bom(files.read_bytes(table.file), encoding)
        tab = data.find(b"\t")
        if tab >= 0:
            # A tab would silently pass as a field separator once '::' becomes one.
            raise DataError(
                f"found a tab; expected {what}", path=where, line=data[:tab].count(b"\n") + 1
            )
        head = data.split(b"\n", first_rating_line)[:first_rating_line]
        data = data.replace(b"::", b"\t")
        source_factory = lambda: io.BytesIO(data)  # noqa: E731
        separator = "\t"
    else:
        head = files.read_lines(table.file, first_rating_line)
        if head and head[0].startswith(codecs.BOM_UTF8):
            head[0] = head[0][len(codecs.BOM_UTF8) :]
            # The mark says the file is UTF-8; with this codec pandas also drops the mark.
            encoding = "utf-8-sig"
        local = files.local_path(table.file)
        if local is not None:
            source_factory = lambda: local  # noqa: E731
        else:
            # Stream zip members: the 25M-row ratings.csv is 650 MB uncompressed.
            source_factory = lambda: files.open(table.file)  # noqa: E731
        separator = table.separator
    _check_head(head, layout, encoding, where)
    columns = list(table.columns)
    read_kwargs = dict(
        sep=separator,
        header=0 if table.header else None,
        names=None if table.header else columns,
        encoding=encoding,
        engine="c",
        quoting=csv.QUOTE_MINIMAL if table.header else csv.QUOTE_NONE,
    )
    dtypes = dict(zip(columns, _DTYPES, strict=True))
    try:
        frame = pd.read_csv(source_factory(), dtype=dtypes, **read_kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"file is empty; expected {what}", path=where) from None
    except pd.errors.ParserError as error:
        match = re.search(r"line (\d+), saw (\d+)", str(error))
        raise DataError(
            f"wrong number of fields ({match.group(2) if match else '?'}); expected {what}",
            path=where,
            line=int(match.group(1)) if match else None,
        ) from None
    except READ_ERRORS as error:
        raise DataError(
            f"cannot read file, the archive looks corrupt ({error})", path=where
        ) from None
    except (ValueError, TypeError, OverflowError) as error:
        # Slow path, only on bad input: re-read as text to find the offending line.
        frame = pd.read_csv(source_factory(), dtype=str, keep_default_na=False, **read_kwargs)
        _raise_first_bad_value(frame, columns, where, first_rating_line, what)
        raise DataError(f"cannot parse ratings ({error}); expected {what}", path=where) from None
    if len(frame) == 0:
        raise DataError(f"file has no ratings; expected {what}", path=where)
    users, movies, rating, timestamp = (
        frame[column].to_numpy(dtype) for column, dtype in zip(columns, _DTYPES, strict=True)
    )
    lowest, highest = layout.rating_scale
    bad = ~((rating >= lowest) & (rating <= highest))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"rating {rating[row]:g} is out of scale; expected a value from {lowest:g} to "
            f"{highest:g}",
            path=where,
            line=row + first_rating_line,
        )
    return users, movies, rating.astype(np.float32), timestamp, first_rating_line


def _check_head(head: list[bytes], layout: Layout, encoding: str, where: str) -> None:
    """Checks the header (if any) and the field count of the first rating line.

    pandas cannot be left to do the second: a first line with one field too many silently
    becomes an index column, and later lines then pass with extra fields.
    """
    table = layout.ratings
    lines = [line.decode(encoding, errors="replace").strip() for line in head]
    if not lines or not lines[0]:
        raise DataError(
            f"file is empty (or its first line is blank); expected {table.description}",
            path=where,
            line=1 if head else None,
        )
    expected = len(table.columns)
    if table.header:
        header = [column.strip() for column in lines[0].split(table.separator)]
        check_header(header, table.columns, where)
        if len(lines) < 2 or not lines[1]:
            return  # no rating on line 2: pandas reports an empty file or skips the blank line
        first, number, expected = lines[1], 2, len(header)
    else:
        first, number = lines[0], 1
    check_field_count(
        first.split(table.separator),
        first,
        table.separator,
        expected,
        where,
        number,
        table.description,
    )


def _raise_first_bad_value(frame, columns: list[str], where: str, offset: int, what: str) -> None:
    """Raises for the first field (in file order) that is not a number of its column's kind.

    Args:
        frame: the ratings read as text, one column per field of ``columns``.
        columns: user, movie, rating and timestamp column names.
        where: the file, as named in messages.
        offset: file line number of the first row.
        what: what a line holds, for the message.
    """
    import pandas as pd

    first_bad: tuple[int, str, str] | None = None
    for column, label in zip(columns, _LABELS, strict=True):
        text = frame[column].astype(str)
        values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if label != "rating":
            bad |= np.nan_to_num(values) != np.round(np.nan_to_num(values))
        if bad.any():
            row = int(np.argmax(bad))
            if first_bad is None or row < first_bad[0]:
                first_bad = (row, label, text.iloc[row])
    if first_bad is not None:
        row, label, value = first_bad
        kind = "a number" if label == "rating" else "an integer"
        shown = repr(value) if value else "an empty value"
        raise DataError(
            f"{label} {shown} is not {kind}; expected {what}", path=where, line=row + offset
        )
