"""Checks of the Python API's arguments: ids, counts, ratings and weights, with clear errors.

Every public :class:`~tfrs_movies.recommend.Recommender` method validates through these, so a
wrong type (``None``, ``True``, ``"4"``, ``nan``) fails with a :class:`ValueError` that names
the argument instead of a ``TypeError`` from deep inside numpy, or a silently wrong answer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for the annotation only: catalogue imports this module
    from tfrs_movies.recommend.catalogue import Catalogue

MIN_RATING, MAX_RATING = 0.5, 5.0
"""The star scale a person's ratings must lie within (MovieLens uses 0.5-5)."""


def identifier(value: object, what: str) -> str:
    """A user or movie key as the string the run's vocabularies hold.

    Args:
        value: a str (id or title) or an integer id (bool is not an id).
        what: "user id" or "movie" (for the message).

    Raises:
        ValueError: any other type, such as None or a float.
    """
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    raise ValueError(f"a {what} must be a string or an integer, got {value!r}")


def count(value: object, name: str, minimum: int = 1) -> int:
    """A count argument (k, num_candidates, min_ratings) as an int.

    Raises:
        ValueError: not an integer (floats, NaN and bools included) or below ``minimum``.
    """
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool | np.bool_)
        or value < minimum
    ):
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def weight(value: object, name: str) -> float:
    """A finite real weight (e.g. rerank_weight) as a float.

    Raises:
        ValueError: not a real number (bools and strings included), or NaN/infinite.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def rating(movie: object, value: object) -> float:
    """A person's rating of ``movie`` as a float on the star scale.

    Raises:
        ValueError: not a real number (bools and numeric strings such as "4" included), or
            outside :data:`MIN_RATING`-:data:`MAX_RATING` (NaN too); the message names the movie.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        raise ValueError(f"rating of {movie!r} must be a number, got {value!r}")
    if not MIN_RATING <= value <= MAX_RATING:
        raise ValueError(
            f"rating of {movie!r} must be within {MIN_RATING:g}-{MAX_RATING:g}, got {value!r}"
        )
    return float(value)


def person_ratings(catalogue: Catalogue, ratings: object) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int64 movie rows and (n,) float32 ratings of a person's ``ratings``.

    Args:
        catalogue: the run's movies (ids and exact titles are both accepted as keys).
        ratings: ``{movie id or exact title: rating}``.

    Raises:
        ValueError: not a non-empty mapping, a bad rating (see :func:`rating`), or a movie
            given twice (by id and by title count as twice). KeyError: an unknown movie.
    """
    if not isinstance(ratings, Mapping) or not ratings:
        raise ValueError("ratings must be a non-empty mapping {movie id or title: rating}")
    given: dict[int, object] = {}  # movie row -> the key it was given by
    values = []
    for movie, value in ratings.items():
        values.append(rating(movie, value))
        row = catalogue.movie_row(movie)
        if row in given:
            raise ValueError(
                f"movie {catalogue.movies.ids[row]} ({catalogue.titles[row]}) is rated twice, "
                f"as {given[row]!r} and as {movie!r}; give each movie once"
            )
        given[row] = movie
    return np.fromiter(given, np.int64, len(given)), np.asarray(values, np.float32)


def padded_people(
    people: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """People's :func:`person_ratings` as arrays: (B, N) int64 movie rows and float32 ratings,
    padded with 0 to the longest (N), and the (B, N) bool mask of the given ones."""
    lengths = np.array([len(rows) for rows, _ in people])
    given = np.arange(lengths.max()) < lengths[:, None]
    rows = np.zeros(given.shape, np.int64)
    ratings = np.zeros(given.shape, np.float32)
    rows[given] = np.concatenate([person_rows for person_rows, _ in people])
    ratings[given] = np.concatenate([values for _, values in people])
    return rows, ratings, given
