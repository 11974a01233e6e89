"""The canonical MovieLens schema and the columnar container every source produces.

The feature names and dtypes are those of the tfds ``movielens/*-ratings`` datasets, so a model
written against tfds examples runs on every source. In memory, ratings are kept columnar: users
and movies are stored once in tables and each rating holds integer row indices into them. That
keeps 25M ratings at a few hundred MB with no Python object per rating; :meth:`Ratings.examples`
materializes the tfds-style per-rating columns on demand.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

logger = logging.getLogger(__name__)

# tfds `movielens` ClassLabel names for `movie_genres`, in index order (tfds 4.9.x).
GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "Unknown",
    "War",
    "Western",
    "(no genres listed)",
)
NUM_GENRES = len(GENRES)

# tfds `movielens` ClassLabel names for `user_occupation_label`, in index order.
OCCUPATIONS: tuple[str, ...] = (
    "academic/educator",
    "artist",
    "clerical/admin",
    "customer service",
    "doctor/health care",
    "entertainment",
    "executive/managerial",
    "farmer",
    "homemaker",
    "lawyer",
    "librarian",
    "other/not specified",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    # tfds merges ml-1m's "K-12 student" and "college/grad student" into this one label.
    "student",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

# Canonical per-rating feature names and their numpy dtypes (tfds names and dtypes).
RATING_FEATURES: dict[str, str] = {
    "user_id": "str",
    "movie_id": "str",
    "movie_title": "str",
    "user_rating": "float32",
    "timestamp": "int64",
    "movie_genres": "int64 list",
}
# Present only where the source has user demographics (ml-100k, ml-1m).
DEMOGRAPHIC_FEATURES: dict[str, str] = {
    "bucketized_user_age": "float32",
    "user_gender": "bool",
    "user_occupation_label": "int64",
    "user_zip_code": "str",
}

MIN_RATING = 0.5
MAX_RATING = 5.0


@dataclasses.dataclass(frozen=True)
class Ratings:
    """A MovieLens-shaped dataset: a movie table, a user table and columnar ratings.

    Attributes:
        name: where it came from, e.g. ``"ml-100k"`` or ``"synthetic:users=...,seed=0"``.
        movie_ids: (M,) str, unique movie ids.
        movie_titles: (M,) str.
        movie_genres: (M, NUM_GENRES) bool multi-hot over :data:`GENRES`.
        user_ids: (U,) str, unique user ids.
        user_features: demographic columns, each (U,), keyed by the names in
            :data:`DEMOGRAPHIC_FEATURES`; empty when the source has none.
        user_index: (R,) int32, row of ``user_ids`` for each rating.
        movie_index: (R,) int32, row of ``movie_ids`` for each rating.
        rating: (R,) float32 star rating in [0.5, 5].
        timestamp: (R,) int64 seconds since the epoch.
        num_duplicates_dropped: how many repeated (user, movie) ratings the loader dropped (the
            latest by timestamp is kept; see the README).
    """

    name: str
    movie_ids: np.ndarray
    movie_titles: np.ndarray
    movie_genres: np.ndarray
    user_ids: np.ndarray
    user_features: dict[str, np.ndarray]
    user_index: np.ndarray
    movie_index: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    num_duplicates_dropped: int = 0

    @property
    def num_ratings(self) -> int:
        return int(self.rating.shape[0])

    @property
    def num_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def num_movies(self) -> int:
        return int(self.movie_ids.shape[0])

    def subset(self, rows: np.ndarray) -> Ratings:
        """Returns the same tables with only the ratings at ``rows`` (int indices or bool mask)."""
        return dataclasses.replace(
            self,
            user_index=self.user_index[rows],
            movie_index=self.movie_index[rows],
            rating=self.rating[rows],
            timestamp=self.timestamp[rows],
        )

    def examples(self) -> dict[str, np.ndarray]:
        """Per-rating columns in the canonical tfds schema.

        Returns:
            dict with ``user_id``, ``movie_id``, ``movie_title`` (R,) str; ``user_rating`` (R,)
            float32; ``timestamp`` (R,) int64; ``movie_genres`` (R,) object array of int64
            arrays (tfds genre indices); plus the demographic features when present.
        """
        genre_lists = np.empty(self.num_movies, dtype=object)
        for row, hot in enumerate(self.movie_genres):
            genre_lists[row] = np.flatnonzero(hot).astype(np.int64)
        out = {
            "user_id": self.user_ids[self.user_index],
            "movie_id": self.movie_ids[self.movie_index],
            "movie_title": self.movie_titles[self.movie_index],
            "user_rating": self.rating.astype(np.float32),
            "timestamp": self.timestamp.astype(np.int64),
            "movie_genres": genre_lists[self.movie_index],
        }
        for key, column in self.user_features.items():
            out[key] = column[self.user_index]
        return out


def finish_ratings(
    name: str,
    *,
    movie_ids: np.ndarray,
    movie_titles: np.ndarray,
    movie_genres: np.ndarray,
    user_ids: np.ndarray,
    user_features: dict[str, np.ndarray],
    user_index: np.ndarray,
    movie_index: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray,
    where: str,
) -> Ratings:
    """Drops repeated (user, movie) ratings, keeping the latest, and builds the Ratings.

    Every source ends here (raw files and tfds), so both treat duplicates the same way.

    Args:
        name: dataset name for :attr:`Ratings.name`.
        where: the source named in the warning about dropped duplicates.
        (others): the :class:`Ratings` fields; index arrays (R,).

    Returns:
        Ratings whose (user, movie) pairs are unique; the kept ratings stay in input order.
    """
    user_index = np.asarray(user_index, dtype=np.int32)
    movie_index = np.asarray(movie_index, dtype=np.int32)
    keep, dropped = latest_unique(user_index, movie_index, timestamp, len(movie_ids))
    if dropped:
        logger.warning(
            "%s: dropped %d duplicate (user, movie) ratings, keeping the latest by timestamp",
            where,
            dropped,
        )
        user_index, movie_index = user_index[keep], movie_index[keep]
        rating, timestamp = rating[keep], timestamp[keep]
    return Ratings(
        name=name,
        movie_ids=movie_ids,
        movie_titles=movie_titles,
        movie_genres=movie_genres,
        user_ids=user_ids,
        user_features=user_features,
        user_index=user_index,
        movie_index=movie_index,
        rating=np.asarray(rating, dtype=np.float32),
        timestamp=np.asarray(timestamp, dtype=np.int64),
        num_duplicates_dropped=int(dropped),
    )


def latest_unique(
    user_index: np.ndarray, movie_index: np.ndarray, timestamp: np.ndarray, num_movies: int
) -> tuple[np.ndarray | None, int]:
    """Finds the ratings to keep so each (user, movie) pair appears once.

    Args:
        user_index: (R,) int.
        movie_index: (R,) int.
        timestamp: (R,) int64.
        num_movies: M, to form one int64 key per pair.

    Returns:
        ``(keep, dropped)``: sorted (K,) int64 rows to keep (None when nothing is dropped) and
        R - K. Among repeats the latest timestamp wins; on equal timestamps the later row.
    """
    key = user_index.astype(np.int64) * max(num_movies, 1) + movie_index
    # Cheap check first: one sort, no argsort, on the common duplicate-free data.
    sorted_key = np.sort(key)
    if not (sorted_key[1:] == sorted_key[:-1]).any():
        return None, 0
    rows = np.arange(len(key))
    order = np.lexsort((rows, timestamp, key))
    last_of_group = np.ones(len(key), dtype=bool)
    last_of_group[:-1] = key[order][1:] != key[order][:-1]
    keep = np.sort(order[last_of_group])
    return keep, int(len(key) - len(keep))
