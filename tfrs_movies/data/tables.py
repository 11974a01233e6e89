"""The small MovieLens tables (movies, users), parsed line by line as tfds parses them.

One reader serves every layout: :class:`~tfrs_movies.data.layouts.Table` says the file, the
separator and the columns, :class:`~tfrs_movies.data.layouts.Layout` how genres, ages and
occupations are written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import numpy as np

from tfrs_movies.data.files import MovieLensFiles
from tfrs_movies.data.layouts import GENRE_ALIASES, Layout, Table
from tfrs_movies.data.schema import GENRES, NUM_GENRES, OCCUPATIONS
from tfrs_movies.data.text import check_field_count, check_header, strip_bom
from tfrs_movies.errors import DataError

_GENRE_INDEX = {name: index for index, name in enumerate(GENRES)}
_OCCUPATION_INDEX = {name: index for index, name in enumerate(OCCUPATIONS)}


def records(
    files: MovieLensFiles, table: Table, encoding: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yields the non-blank lines of a table as (1-based line number, {column: field}).

    Args:
        files: the copy holding the table.
        table: which file and how it is delimited.
        encoding: the layout's encoding (a UTF-8 byte-order mark overrides it).

    Raises:
        DataError: the file is empty, is not valid text, lacks a header column, or a line has
            the wrong number of fields.
    """
    where = files.display(table.file)
    data, encoding = strip_bom(files.read_bytes(table.file), encoding)
    if not data.strip():
        expected = (
            f"a header {','.join(table.columns)} and one line per record"
            if table.header
            else "one record per line"
        )
        raise DataError(f"file is empty; expected {expected}", path=where)
    if table.header:
        yield from _csv_records(data, table, encoding, where)
        return
    # Split bytes, not text: decoded ISO-8859-1 has characters (U+0085) that str.splitlines
    # would take for line breaks.
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode(encoding).strip()
        except UnicodeDecodeError as error:
            raise DataError(
                f"text is not valid {encoding.upper()} ({error.reason})", path=where, line=number
            ) from error
        if not line:
            continue
        fields = line.split(table.separator)
        check_field_count(
            fields, line, table.separator, len(table.columns), where, number, table.description
        )
        yield number, dict(zip(table.columns, fields, strict=True))


def _csv_records(
    data: bytes, table: Table, encoding: str, where: str
) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"text is not valid {encoding.upper()} ({error.reason})", path=where, line=line
        ) from error
    # The csv module, as tfds uses, so quoted titles with commas parse identically.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=table.separator)
    header = next(reader)
    check_header(header, table.columns, where)
    for fields in reader:
        if not fields:
            continue
        number = reader.line_num
        if len(fields) != len(header):
            raise DataError(
                f"expected {len(header)} comma-separated fields ({','.join(header)}), found "
                f"{len(fields)}; quote fields that contain commas",
                path=where,
                line=number,
            )
        yield number, dict(zip(header, fields, strict=True))


def _genre_row(names: list[str], where: str, number: int) -> np.ndarray:
    hot = np.zeros(NUM_GENRES, dtype=bool)
    for name in names:
        genre = GENRE_ALIASES.get(name, name)
        index = _GENRE_INDEX.get(genre)
        if index is None:
            raise DataError(
                f"unknown genre {genre!r}; expected '|'-separated names from: {', '.join(GENRES)}",
                path=where,
                line=number,
            )
        hot[index] = True
    return hot


def _flagged_genres(
    row: dict[str, str], flag_columns: tuple[str, ...], where: str, number: int
) -> list[str]:
    flags = [row[column] for column in flag_columns]
    if any(flag not in ("0", "1") for flag in flags):
        raise DataError(
            f"genre flags must be 0 or 1, found {'|'.join(flags)}", path=where, line=number
        )
    return [column for column, flag in zip(flag_columns, flags, strict=True) if flag == "1"]


def read_movies(files: MovieLensFiles, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads the movie table of a layout, in file order.

    Returns:
        movie ids (M,) str, titles (M,) object (str), genres (M, NUM_GENRES) bool multi-hot
        over :data:`~tfrs_movies.data.schema.GENRES`.

    Raises:
        DataError: malformed line, unknown genre, or a movie id listed twice.
    """
    table = layout.movies
    where = files.display(table.file)
    id_column, title_column = table.columns[:2]
    ids: list[str] = []
    titles: list[str] = []
    genres: list[np.ndarray] = []
    first_line: dict[str, int] = {}
    for number, row in records(files, table, layout.encoding):
        movie_id = row[id_column]
        if movie_id in first_line:
            raise DataError(
                f"movie id {movie_id!r} appears twice (first on line {first_line[movie_id]}); "
                "expected one line per movie",
                path=where,
                line=number,
            )
        first_line[movie_id] = number
        if layout.genre_flag_columns is not None:
            names = _flagged_genres(row, layout.genre_flag_columns, where, number)
        else:
            names = row["genres"].split("|")
        ids.append(movie_id)
        titles.append(row[title_column])
        genres.append(_genre_row(names, where, number))
    # Object dtype: fixed-width unicode would make the per-rating title column of
    # Ratings.examples() (25M rows) tens of GB.
    title_array = np.empty(len(titles), dtype=object)
    title_array[:] = titles
    genre_array = np.stack(genres) if genres else np.zeros((0, NUM_GENRES), dtype=bool)
    return np.array(ids, dtype=str), title_array, genre_array


def _age(text: str, buckets: tuple[int, ...] | None, where: str, number: int) -> float:
    try:
        age = int(text)
    except ValueError:
        raise DataError(f"age {text!r} is not an integer", path=where, line=number) from None
    if buckets is None:
        return float(age)
    bucket = 1
    for threshold in buckets:
        if age < threshold:
            break
        bucket = threshold
    return float(bucket)


def read_users(files: MovieLensFiles, layout: Layout) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reads the user table of a layout that has one, in file order.

    Returns:
        user ids (U,) str and the demographic columns (each (U,)) named as in
        :data:`~tfrs_movies.data.schema.DEMOGRAPHIC_FEATURES`: age bucket float32, gender bool
        (True = male), occupation label int64 (index into OCCUPATIONS), zip code str.

    Raises:
        DataError: malformed line, unknown occupation, or a user id listed twice.
        ValueError: the layout has no user table (a caller's mistake).
    """
    if layout.users is None:
        raise ValueError(f"layout {layout.name} has no user table")
    where = files.display(layout.users.file)
    ids, ages, genders, occupations, zips = [], [], [], [], []
    for number, row in records(files, layout.users, layout.encoding):
        label = layout.occupations.get(row["occupation"])
        if label is None:
            raise DataError(
                f"unknown occupation {row['occupation']!r}; expected one of "
                f"{', '.join(layout.occupations)}",
                path=where,
                line=number,
            )
        ids.append(row["user id"])
        ages.append(_age(row["age"], layout.age_buckets, where, number))
        genders.append(row["gender"] == "M")
        occupations.append(_OCCUPATION_INDEX[label])
        zips.append(row["zip code"])
    if len(set(ids)) != len(ids):
        raise DataError("a user id appears twice; expected one line per user", path=where)
    features = {
        "bucketized_user_age": np.array(ages, dtype=np.float32),
        "user_gender": np.array(genders, dtype=bool),
        "user_occupation_label": np.array(occupations, dtype=np.int64),
        "user_zip_code": np.array(zips, dtype=str),
    }
    return np.array(ids, dtype=str), features
