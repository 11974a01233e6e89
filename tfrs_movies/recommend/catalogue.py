"""A run's users and movies: ids <-> rows, titles, genres and training counts.

The one place where ``vocab/users.txt`` and ``vocab/movies.csv`` are read and where an id or an
exact title becomes a row; the Recommender and the REST API both resolve through it.
"""

from __future__ import annotations

import csv
import dataclasses

import numpy as np

from tfrs_movies.data.vocab import Vocabulary
from tfrs_movies.recommend import inputs
from tfrs_movies.rundir import RunPaths


class AmbiguousTitleError(KeyError):
    """A title given for a movie names several movies of the run; the message lists their ids."""


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The users and movies of one run directory, in its row order.

    Attributes:
        users: (U,) user vocabulary; row ``r`` of ``users.txt`` and ``seen/`` is user ``r``.
        movies: (M,) movie vocabulary; row ``r`` of ``movies.csv`` and ``movie_vectors.npy``.
        titles, genres: (M,) str per movie row (genres joined by ``|``).
        num_ratings: (M,) int training ratings per movie row.
    """

    users: Vocabulary
    movies: Vocabulary
    titles: np.ndarray
    genres: np.ndarray
    num_ratings: np.ndarray
    title_rows: dict[str, list[int]] = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        title_rows: dict[str, list[int]] = {}
        for row, title in enumerate(self.titles.tolist()):
            title_rows.setdefault(title, []).append(row)
        object.__setattr__(self, "title_rows", title_rows)

    @classmethod
    def read(cls, paths: RunPaths) -> Catalogue:
        """Reads a run's ``vocab/users.txt`` and ``vocab/movies.csv``.

        Raises:
            OSError: a file cannot be read; KeyError: a column is missing; ValueError: a count
                is not an integer or the ids are not sorted and unique.
        """
        with open(paths.movies_csv, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return cls(
            users=Vocabulary.load(paths.users_txt),
            movies=Vocabulary(np.array([r["movie_id"] for r in rows], dtype=str)),
            titles=np.array([r["title"] for r in rows], dtype=object),
            genres=np.array([r["genres"] for r in rows], dtype=object),
            num_ratings=np.array([int(r["num_train_ratings"]) for r in rows], dtype=np.int64),
        )

    def user_row(self, user: object) -> int:
        """Row of a known user.

        Raises:
            KeyError: a user not in the run's training data; ValueError: not a str/int id.
        """
        key = inputs.identifier(user, "user id")
        if key not in self.users:
            raise KeyError(
                f"unknown user {key!r}: not in this run's training data; "
                "use recommend_for_ratings for a new user"
            )
        return self.users.row(key)

    def movie_row(self, movie: object) -> int:
        """Row of a movie given by id or by exact title (an id wins over a title).

        Raises:
            KeyError: unknown id/title; :class:`AmbiguousTitleError` (a KeyError) for a title
                shared by several movies (ids listed). ValueError: not a str/int.
        """
        key = inputs.identifier(movie, "movie")
        if key in self.movies:
            return self.movies.row(key)
        rows = self.title_rows.get(key)
        if rows is None:
            raise KeyError(f"unknown movie {key!r}: not a movie id or exact title of this run")
        if len(rows) > 1:
            ids = ", ".join(self.movies.ids[r] for r in rows)
            raise AmbiguousTitleError(
                f"title {key!r} is ambiguous: it names movies {ids}; pass an id"
            )
        return rows[0]
