"""Split invariants for every method and several seeds."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies.data import (
    leave_last_n_split,
    random_split,
    split_ratings,
    synthetic_ratings,
    temporal_split,
)
from tfrs_movies.errors import ConfigError


@pytest.fixture(scope="module")
def ratings():
    return synthetic_ratings(num_users=300, num_movies=200, num_ratings=8000, seed=11)


def _keys(r):
    return r.user_index.astype(np.int64) * r.num_movies + r.movie_index


@pytest.mark.parametrize("method", ["random", "temporal", "leave_last_n", "leave-last-n"])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_disjoint_and_complete(ratings, method, seed):
    train, test = split_ratings(ratings, method, test_fraction=0.25, seed=seed, leave_last_n=2)
    assert train.num_ratings + test.num_ratings == ratings.num_ratings
    assert test.num_ratings > 0 and train.num_ratings > 0
    train_keys, test_keys = set(_keys(train).tolist()), set(_keys(test).tolist())
    assert not train_keys & test_keys
    assert train_keys | test_keys == set(_keys(ratings).tolist())
    # Tables are shared, so ids keep their meaning.
    assert train.movie_ids is ratings.movie_ids and test.user_ids is ratings.user_ids
    again = split_ratings(ratings, method, test_fraction=0.25, seed=seed, leave_last_n=2)
    np.testing.assert_array_equal(again[1].user_index, test.user_index)


def test_random_split_size_and_seed(ratings):
    _, test_a = random_split(ratings, 0.2, seed=1)
    _, test_b = random_split(ratings, 0.2, seed=2)
    assert test_a.num_ratings == round(ratings.num_ratings * 0.2)
    assert not np.array_equal(_keys(test_a), _keys(test_b))


def test_temporal_split_is_future(ratings):
    train, test = temporal_split(ratings, test_fraction=0.3)
    assert train.timestamp.max() <= test.timestamp.min()
    assert test.num_ratings == round(ratings.num_ratings * 0.3)
    cutoff = int(np.median(ratings.timestamp))
    train, test = temporal_split(ratings, cutoff=cutoff)
    assert (test.timestamp >= cutoff).all() and (train.timestamp < cutoff).all()


@pytest.mark.parametrize("n", [1, 3])
def test_leave_last_n(ratings, n):
    train, test = leave_last_n_split(ratings, n=n)
    counts = np.bincount(ratings.user_index, minlength=ratings.num_users)
    test_counts = np.bincount(test.user_index, minlength=ratings.num_users)
    np.testing.assert_array_equal(test_counts, np.where(counts > n, n, 0))
    # Each held-out rating is no earlier than any of that user's training ratings.
    last_train = np.full(ratings.num_users, np.iinfo(np.int64).min)
    np.maximum.at(last_train, train.user_index, train.timestamp)
    assert (test.timestamp >= last_train[test.user_index]).all()


def test_leave_last_n_small_users_stay_in_train(tiny_csv):
    from tfrs_movies.data import load_source

    small = load_source(str(tiny_csv))  # user 1 has 2 ratings, user 7 has 1
    train, test = leave_last_n_split(small, n=1)
    assert test.user_ids[test.user_index].tolist() == ["1"]
    assert test.timestamp.tolist() == [964982703]  # user 1's latest
    assert train.num_ratings == 2


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("shuffle", {}), ("random", {"test_fraction": 1.5}), ("leave_last_n", {"leave_last_n": 0})],
)
def test_bad_parameters(ratings, method, kwargs):
    with pytest.raises(ConfigError):
        split_ratings(ratings, method, **kwargs)
