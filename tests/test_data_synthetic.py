"""Synthetic generator: determinism, shape and learnable structure."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies.data import GENRES, load_source, synthetic_ratings
from tfrs_movies.data.synthetic import parse_synthetic_spec
from tfrs_movies.errors import DataError


@pytest.fixture(scope="module")
def medium():
    return synthetic_ratings(num_users=2000, num_movies=1000, num_ratings=60_000, seed=3)


def test_deterministic_for_seed():
    first = synthetic_ratings(300, 200, 5000, seed=7)
    second = synthetic_ratings(300, 200, 5000, seed=7)
    other = synthetic_ratings(300, 200, 5000, seed=8)
    for field in ("user_index", "movie_index", "rating", "timestamp", "movie_genres"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert first.movie_titles.tolist() == second.movie_titles.tolist()
    assert not np.array_equal(first.rating, other.rating)


def test_sizes_unique_pairs_and_scale(medium):
    assert (medium.num_users, medium.num_movies, medium.num_ratings) == (2000, 1000, 60_000)
    keys = medium.user_index.astype(np.int64) * medium.num_movies + medium.movie_index
    assert len(np.unique(keys)) == medium.num_ratings
    assert medium.rating.min() >= 0.5 and medium.rating.max() <= 5.0
    np.testing.assert_array_equal(medium.rating * 2, np.round(medium.rating * 2))
    assert len(np.unique(medium.rating)) >= 8
    assert medium.movie_titles[16].startswith("Synthetic Movie 17 (")
    assert medium.movie_ids[0] == "1" and medium.user_ids[-1] == "2000"
    assert medium.movie_genres.any(axis=1).all()  # every movie has a genre
    assert not medium.movie_genres[:, GENRES.index("Unknown")].any()
    assert medium.timestamp.min() > 7e8 and medium.timestamp.max() < 1.6e9


def test_popularity_and_activity_are_skewed(medium):
    per_movie = np.sort(np.bincount(medium.movie_index, minlength=medium.num_movies))[::-1]
    top_share = per_movie[: medium.num_movies // 100].sum() / medium.num_ratings
    assert top_share > 0.05  # top 1% of movies get well over 1% of ratings
    per_user = np.bincount(medium.user_index, minlength=medium.num_users)
    assert per_user.max() > 4 * np.median(per_user)


def test_ratings_are_learnable(medium):
    # User and movie mean ratings explain a good share of the variance (biases are real).
    global_mean = medium.rating.mean()
    user_mean = np.bincount(medium.user_index, medium.rating, medium.num_users) / np.maximum(
        np.bincount(medium.user_index, minlength=medium.num_users), 1
    )
    residual = medium.rating - user_mean[medium.user_index]
    assert residual.var() < 0.9 * ((medium.rating - global_mean) ** 2).mean()


def test_parse_spec_and_load_source():
    assert parse_synthetic_spec("synthetic") == {
        "users": 943,
        "movies": 1682,
        "ratings": 100_000,
        "seed": 0,
    }
    spec = "synthetic:users=50,movies=40,ratings=500,seed=2"
    ratings = load_source(spec)
    assert ratings.name == spec
    assert (ratings.num_users, ratings.num_movies, ratings.num_ratings) == (50, 40, 500)


def test_dense_small_request_fills_exactly():
    ratings = synthetic_ratings(20, 10, 100, seed=1)  # half of all cells
    keys = ratings.user_index.astype(np.int64) * 10 + ratings.movie_index
    assert len(np.unique(keys)) == 100


@pytest.mark.parametrize("spec", ["synthetic:users=0", "synthetic:users=5,movies=5,ratings=20"])
def test_impossible_sizes(spec):
    with pytest.raises(DataError):
        load_source(spec)
