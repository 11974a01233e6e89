"""Per-user movie sets in compressed sparse row (CSR) form, the currency of the top-N metrics.

A user is a row of ``Ratings.user_ids`` and a movie a row of ``Ratings.movie_ids``; train and test
splits made with :meth:`Ratings.subset` share those tables, so rows mean the same in both.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from tfrs_movies.data.schema import Ratings


@dataclasses.dataclass(frozen=True)
class UserItems:
    """The set of movie rows each user rated, in compressed sparse row (CSR) form.

    The movies of user row ``u`` are ``indices[indptr[u]:indptr[u + 1]]``, sorted ascending and
    without duplicates.

    Attributes:
        indptr: (num_users + 1,) int64 offsets into ``indices``.
        indices: (nnz,) int32 movie rows.
        num_movies: size of the movie table (the column space).
    """

    indptr: np.ndarray
    indices: np.ndarray
    num_movies: int

    @classmethod
    def from_ratings(cls, ratings: Ratings) -> UserItems:
        """Builds the per-user movie sets of ``ratings`` (repeated pairs are kept once).

        Args:
            ratings: any ratings; only ``user_index`` and ``movie_index`` are read.

        Returns:
            A :class:`UserItems` with ``ratings.num_users`` rows over ``ratings.num_movies``.
        """
        return cls.from_pairs(
            ratings.user_index, ratings.movie_index, ratings.num_users, ratings.num_movies
        )

    @classmethod
    def from_pairs(
        cls, user_rows: np.ndarray, movie_rows: np.ndarray, num_users: int, num_movies: int
    ) -> UserItems:
        """Builds per-user movie sets from parallel (R,) arrays of user and movie rows.

        Args:
            user_rows: (R,) int, each in [0, num_users).
            movie_rows: (R,) int, each in [0, num_movies).
            num_users: number of CSR rows.
            num_movies: size of the movie table.

        Returns:
            A :class:`UserItems`.
        """
        user_rows = np.asarray(user_rows, dtype=np.int64)
        movie_rows = np.asarray(movie_rows, dtype=np.int64)
        if user_rows.shape != movie_rows.shape or user_rows.ndim != 1:
            raise ValueError(
                f"user_rows and movie_rows must be 1-D and of equal length, got shapes "
                f"{user_rows.shape} and {movie_rows.shape}"
            )
        # One sorted, de-duplicated int64 key per (user, movie) gives the CSR order directly.
        keys = np.unique(user_rows * num_movies + movie_rows)
        counts = np.bincount(keys // num_movies, minlength=num_users)
        indptr = np.zeros(num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            indptr=indptr, indices=(keys % num_movies).astype(np.int32), num_movies=num_movies
        )

    @property
    def num_users(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def counts(self) -> np.ndarray:
        """Returns (num_users,) int64: how many movies each user has."""
        return np.diff(self.indptr)

    def nonempty_rows(self) -> np.ndarray:
        """Returns the int64 user rows that have at least one movie, ascending."""
        return np.flatnonzero(self.counts() > 0)

    def items(self, user_row: int) -> np.ndarray:
        """Returns the sorted (n,) int32 movie rows of one user."""
        return self.indices[self.indptr[user_row] : self.indptr[user_row + 1]]

    def gather(self, user_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flattens the movie sets of several users into coordinate (COO) form.

        Args:
            user_rows: (B,) int user rows.

        Returns:
            ``(positions, movie_rows)``, both (n,) int64: entry j says that user
            ``user_rows[positions[j]]`` has movie ``movie_rows[j]``.
        """
        user_rows = np.asarray(user_rows, dtype=np.int64)
        starts = self.indptr[user_rows]
        counts = self.indptr[user_rows + 1] - starts
        positions = np.repeat(np.arange(user_rows.shape[0]), counts)
        # Offset of each entry within its own user's slice, without a Python loop.
        within = np.arange(positions.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
        return positions, self.indices[np.repeat(starts, counts) + within].astype(np.int64)

    def to_dense(self, user_rows: np.ndarray, dtype: npt.DTypeLike = bool) -> np.ndarray:
        """Returns the (B, num_movies) indicator matrix of the given users' movies."""
        positions, movie_rows = self.gather(user_rows)
        dense = np.zeros((len(user_rows), self.num_movies), dtype=dtype)
        dense[positions, movie_rows] = 1
        return dense

    def contains(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Tests membership of (user, movie) pairs, vectorized.

        Args:
            user_rows: int array of user rows.
            movie_rows: int array broadcastable against ``user_rows``; negative entries (padding)
                are never members.

        Returns:
            bool array of the broadcast shape.
        """
        user_rows, movie_rows = np.broadcast_arrays(
            np.asarray(user_rows, dtype=np.int64), np.asarray(movie_rows, dtype=np.int64)
        )
        # Users ascend and movies ascend within a user, so these keys are globally sorted.
        keys = self._keys()
        query = user_rows * self.num_movies + movie_rows
        found = np.searchsorted(keys, query)
        found = np.minimum(found, max(keys.shape[0] - 1, 0))
        hit = keys[found] == query if keys.shape[0] else np.zeros(query.shape, dtype=bool)
        return hit & (movie_rows >= 0) & (movie_rows < self.num_movies)

    def difference(self, other: UserItems) -> UserItems:
        """Returns the per-user sets ``self - other`` (same shape as ``self``)."""
        if other.num_users != self.num_users or other.num_movies != self.num_movies:
            raise ValueError("difference needs two UserItems over the same users and movies")
        user_rows = np.repeat(np.arange(self.num_users), self.counts())
        keep = ~other.contains(user_rows, self.indices)
        return UserItems.from_pairs(
            user_rows[keep], self.indices[keep], self.num_users, self.num_movies
        )

    def _keys(self) -> np.ndarray:
        user_rows = np.repeat(np.arange(self.num_users, dtype=np.int64), self.counts())
        return user_rows * self.num_movies + self.indices
