"""Train/test splits of :class:`Ratings`, deterministic for a seed.

Every split returns ``(train, test)`` built with :meth:`Ratings.subset` from complementary row
sets, so the two are disjoint, together hold every rating, keep the input order, and share the
movie and user tables (ids never change meaning between them).
"""

from __future__ import annotations

import numpy as np

from tfrs_movies.data.schema import Ratings
from tfrs_movies.errors import ConfigError

SPLIT_METHODS: tuple[str, ...] = ("random", "temporal", "leave_last_n")


def _check_fraction(test_fraction: float) -> float:
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    return float(test_fraction)


def _split_by_mask(ratings: Ratings, is_test: np.ndarray) -> tuple[Ratings, Ratings]:
    return ratings.subset(~is_test), ratings.subset(is_test)


def random_split(
    ratings: Ratings, test_fraction: float = 0.2, seed: int = 42
) -> tuple[Ratings, Ratings]:
    """Puts a seeded random ``test_fraction`` of the ratings in the test split.

    Args:
        ratings: R ratings.
        test_fraction: share of ratings for test, in (0, 1); test gets round(R * fraction).
        seed: numpy Generator seed; the same seed and data give the same split.

    Returns:
        (train, test) Ratings with R - T and T ratings.
    """
    fraction = _check_fraction(test_fraction)
    num_test = int(round(ratings.num_ratings * fraction))
    chosen = np.random.default_rng(seed).permutation(ratings.num_ratings)[:num_test]
    is_test = np.zeros(ratings.num_ratings, dtype=bool)
    is_test[chosen] = True
    return _split_by_mask(ratings, is_test)


def temporal_split(
    ratings: Ratings, test_fraction: float | None = 0.2, cutoff: int | None = None
) -> tuple[Ratings, Ratings]:
    """Splits at one global point in time: test is the future of train.

    Args:
        ratings: R ratings.
        test_fraction: with no ``cutoff``, the latest round(R * fraction) ratings go to test
            (ties at the boundary timestamp are broken by input order, so the size is exact).
        cutoff: if given, ratings with ``timestamp >= cutoff`` (seconds since the epoch) go to
            test and ``test_fraction`` is ignored.

    Returns:
        (train, test); every test timestamp is >= every train timestamp.
    """
    if cutoff is not None:
        return _split_by_mask(ratings, ratings.timestamp >= int(cutoff))
    if test_fraction is None:
        raise ConfigError("temporal split needs test_fraction or cutoff")
    fraction = _check_fraction(test_fraction)
    num_test = int(round(ratings.num_ratings * fraction))
    order = np.argsort(ratings.timestamp, kind="stable")
    is_test = np.zeros(ratings.num_ratings, dtype=bool)
    is_test[order[ratings.num_ratings - num_test :]] = True
    return _split_by_mask(ratings, is_test)


def leave_last_n_split(ratings: Ratings, n: int = 1) -> tuple[Ratings, Ratings]:
    """Holds out each user's last ``n`` ratings by timestamp.

    Users with ``n`` or fewer ratings keep all of them in train (they would have nothing to
    learn from otherwise). Ties in timestamp are broken by input order.

    Args:
        ratings: R ratings.
        n: ratings per user to hold out, >= 1.

    Returns:
        (train, test); test has ``n`` ratings of every user with more than ``n``.
    """
    if int(n) < 1:
        raise ConfigError(f"leave_last_n must be at least 1, got {n}")
    n = int(n)
    rows = np.arange(ratings.num_ratings)
    order = np.lexsort((rows, ratings.timestamp, ratings.user_index))
    sorted_users = ratings.user_index[order]
    counts = np.bincount(ratings.user_index, minlength=ratings.num_users)
    group_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = rows - group_start[sorted_users]
    from_end = counts[sorted_users] - 1 - position
    is_test_sorted = (from_end < n) & (counts[sorted_users] > n)
    is_test = np.zeros(ratings.num_ratings, dtype=bool)
    is_test[order] = is_test_sorted
    return _split_by_mask(ratings, is_test)


def split_ratings(
    ratings: Ratings,
    method: str = "random",
    test_fraction: float = 0.2,
    seed: int = 42,
    leave_last_n: int = 1,
    cutoff: int | None = None,
) -> tuple[Ratings, Ratings]:
    """Dispatches to one split by name.

    Args:
        ratings: R ratings.
        method: ``random``, ``temporal`` or ``leave_last_n`` (``-`` accepted for ``_``).
        test_fraction: for random and temporal (without cutoff).
        seed: for random.
        leave_last_n: n for leave_last_n.
        cutoff: timestamp for temporal; overrides test_fraction.

    Returns:
        (train, test) Ratings.

    Raises:
        ConfigError: unknown method or invalid parameter.
    """
    name = method.strip().lower().replace("-", "_")
    if name == "random":
        return random_split(ratings, test_fraction=test_fraction, seed=seed)
    if name == "temporal":
        return temporal_split(ratings, test_fraction=test_fraction, cutoff=cutoff)
    if name in ("leave_last_n", "leave_last"):
        return leave_last_n_split(ratings, n=leave_last_n)
    raise ConfigError(
        f"unknown split method {method!r}; expected one of {', '.join(SPLIT_METHODS)}"
    )
