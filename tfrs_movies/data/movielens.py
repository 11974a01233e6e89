"""Reads MovieLens as GroupLens ships it: a folder or a .zip, in any layout of :mod:`.layouts`.

The result has exactly the values the tfds ``movielens/*-ratings`` builder produces from the same
archive: ids as the strings in the files, genres mapped to the tfds ClassLabel indices, ages
bucketized and occupations merged the way tfds does. The large ratings file is parsed with the
pandas C parser (:mod:`.ratings_file`); only the small movie and user tables are parsed line by
line (:mod:`.tables`), mirroring tfds.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tfrs_movies.data.files import MovieLensFiles
from tfrs_movies.data.ratings_file import read_ratings
from tfrs_movies.data.schema import Ratings, finish_ratings
from tfrs_movies.data.tables import read_movies, read_users
from tfrs_movies.errors import DataError

logger = logging.getLogger(__name__)


def read_movielens(path: str | os.PathLike, *, progress: bool = False) -> Ratings:
    """Reads a MovieLens folder or zip into the canonical columnar form.

    Args:
        path: folder or ``.zip`` holding one of the layouts in
            :data:`~tfrs_movies.data.layouts.LAYOUTS` (at the top or one folder deep, as
            GroupLens zips are).
        progress: log a line per copy read (at INFO level).

    Returns:
        Ratings with the movie table of the movies file (M rows, in file order), the user table
        (U rows: ``u.user``/``users.dat`` order, or the sorted distinct ``userId`` values of
        ``ratings.csv``), and R ratings in file order minus dropped duplicates.

    Raises:
        DataError: missing or malformed file; the message names the file and line.
    """
    with MovieLensFiles(path) as files:
        layout = files.detect_layout()
        where = files.display(layout.ratings.file)
        if progress:
            logger.info("reading %s", where)
        movie_ids, titles, genres = read_movies(files, layout)
        user_table = read_users(files, layout) if layout.users is not None else None
        users, movies, rating, timestamp, first_line = read_ratings(files, layout)
        movie_index = _rows_of(movies, movie_ids, where, first_line, "movie id", layout.movies.file)
        if user_table is not None:
            user_ids, user_features = user_table
            user_index = _rows_of(users, user_ids, where, first_line, "user id", layout.users.file)
        else:
            # No user file: the users are the distinct ids that rated, sorted.
            unique_users, user_index = np.unique(users, return_inverse=True)
            user_ids, user_features = unique_users.astype(str), {}
        return finish_ratings(
            files.dataset_name,
            movie_ids=movie_ids,
            movie_titles=titles,
            movie_genres=genres,
            user_ids=user_ids,
            user_features=user_features,
            user_index=user_index,
            movie_index=movie_index,
            rating=rating,
            timestamp=timestamp,
            where=where,
        )


def _rows_of(
    keys: np.ndarray,
    table_ids: np.ndarray,
    where: str,
    first_line: int,
    label: str,
    table_file: str,
) -> np.ndarray:
    """Maps the integer id of each rating to its row of a string id table.

    Args:
        keys: (R,) int64 ids from the ratings file.
        table_ids: (N,) str ids of the movie or user table.
        where: the ratings file, as named in messages.
        first_line: file line number of the first rating.
        label: ``movie id`` or ``user id``, for messages.
        table_file: the table's file name, for messages.

    Returns:
        (R,) int32 rows of ``table_ids``.

    Raises:
        DataError: a rating references an id that is not in the table (with its line).
    """
    try:
        table_keys = table_ids.astype(np.int64)
    except ValueError:
        # Non-numeric ids in the table: join on strings instead (slower, still vectorized).
        table_keys, keys = table_ids, keys.astype(str)
    order = np.argsort(table_keys, kind="stable")
    sorted_keys = table_keys[order]
    if len(sorted_keys):
        position = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        found = sorted_keys[position] == keys
    else:
        position, found = np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    if not found.all():
        row = int(np.argmin(found))
        raise DataError(
            f"rating references unknown {label} {keys[row]}; expected every {label} to be "
            f"listed in {table_file}",
            path=where,
            line=row + first_line,
        )
    return order[position].astype(np.int32)
