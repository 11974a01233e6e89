"""Tests of tfrs_movies.evaluation: metric definitions, seen-movie exclusion, baselines, and the
exported pipeline's metrics."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import threadpoolctl

from tfrs_movies import rundir
from tfrs_movies.config import load_config
from tfrs_movies.data.prepare import prepare_data
from tfrs_movies.data.schema import NUM_GENRES, Ratings
from tfrs_movies.evaluation import (
    EASE,
    BiasedMF,
    BiasOnly,
    MostPopular,
    UserItems,
    baseline_suite,
    baselines,
    choose_ials,
    evaluate_baselines,
    ials,
    per_user_topn,
    rank_test_users,
    rating_metrics,
    topn_metrics,
    topn_metrics_from_lists,
)
from tfrs_movies.evaluation.pipeline import RERANK_WEIGHTS, evaluate_pipeline
from tfrs_movies.evaluation.run_baselines import BaselineProcess
from tfrs_movies.evaluation.selection import grid_search
from tfrs_movies.log import silent

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_ratings(
    user_rows,
    movie_rows,
    num_users: int,
    num_movies: int,
    rating=None,
    name: str = "test",
) -> Ratings:
    """A Ratings over placeholder tables with the given (user, movie[, rating]) rows."""
    user_rows = np.asarray(user_rows, dtype=np.int32)
    movie_rows = np.asarray(movie_rows, dtype=np.int32)
    if rating is None:
        rating = np.full(user_rows.shape, 4.0)
    movie_ids = np.array([f"m{i}" for i in range(num_movies)])
    return Ratings(
        name=name,
        movie_ids=movie_ids,
        movie_titles=movie_ids,
        movie_genres=np.zeros((num_movies, NUM_GENRES), dtype=bool),
        user_ids=np.array([f"u{i}" for i in range(num_users)]),
        user_features={},
        user_index=user_rows,
        movie_index=movie_rows,
        rating=np.asarray(rating, dtype=np.float32),
        timestamp=np.zeros(user_rows.shape, dtype=np.int64),
    )


def fixed_scores(matrix: np.ndarray):
    """A score_fn that looks rows up in a fixed (num_users, num_movies) matrix."""
    return lambda user_rows: matrix[user_rows]


# ----------------------------------------------------------------------------- UserItems


def test_user_items_sorted_deduplicated_csr():
    ratings = make_ratings([2, 0, 2, 2, 0], [3, 1, 0, 3, 4], num_users=4, num_movies=5)
    items = UserItems.from_ratings(ratings)
    assert items.indptr.tolist() == [0, 2, 2, 4, 4]
    assert items.items(0).tolist() == [1, 4]
    assert items.items(1).tolist() == []
    assert items.items(2).tolist() == [0, 3]  # the repeated (2, 3) is kept once
    assert items.nonempty_rows().tolist() == [0, 2]
    positions, movie_rows = items.gather(np.array([2, 1, 0]))
    assert positions.tolist() == [0, 0, 2, 2]
    assert movie_rows.tolist() == [0, 3, 1, 4]
    dense = items.to_dense(np.array([0, 2]))
    assert dense.tolist() == [[False, True, False, False, True], [True, False, False, True, False]]
    assert items.contains(np.array([[0], [2]]), np.array([[1, 2, -1], [3, 0, 4]])).tolist() == [
        [True, False, False],
        [True, True, False],
    ]
    other = UserItems.from_pairs(np.array([0, 2]), np.array([4, 0]), 4, 5)
    assert items.difference(other).indices.tolist() == [1, 3]


# ----------------------------------------------------------------------------- known answers

# Three evaluated users over six movies, cut-offs 2 and 4. Worked by hand:
#   user 0: relevant {1, 3}, list [1, 2, 3, 4] -> recall@2 1/2, recall@4 1, DCG@2 1,
#           IDCG@2 1 + 1/log2(3), AP@2 = (1/1) / min(2, 2) = 1/2
#   user 1: relevant {5},    list [0, 5, 1, 2] -> recall@2 1, recall@4 1, DCG@2 1/log2(3),
#           IDCG@2 1, AP@2 = (1/2) / 1 = 1/2
#   user 2: relevant {0, 2, 4}, list [3, 1, 5, 0] -> recall@2 0, recall@4 1/3, DCG@2 0, AP@2 0
LISTS = np.array([[1, 2, 3, 4], [0, 5, 1, 2], [3, 1, 5, 0]])
TEST = make_ratings([0, 0, 1, 2, 2, 2], [1, 3, 5, 0, 2, 4], num_users=4, num_movies=6)
LOG2_3 = math.log2(3)
EXPECTED = {
    "recall@2": (0.5 + 1 + 0) / 3,
    "recall@4": (1 + 1 + 1 / 3) / 3,
    "precision@2": (0.5 + 0.5 + 0) / 3,
    "precision@4": (0.5 + 0.25 + 0.25) / 3,
    "ndcg@2": (1 / (1 + 1 / LOG2_3) + 1 / LOG2_3 + 0) / 3,
    "map@2": (0.5 + 0.5 + 0) / 3,
    "coverage@2": 5 / 6,  # top-2 lists show {1, 2, 0, 5, 3}
    "num_users": 3,
}


def test_known_answers_from_lists():
    got = topn_metrics_from_lists(
        LISTS, np.array([0, 1, 2]), TEST, ks=(2, 4), ndcg_k=2, coverage_k=2
    )
    assert got == pytest.approx(EXPECTED, abs=1e-12)


def test_per_user_known_answers_average_to_the_reported_means():
    got = per_user_topn(LISTS, np.array([0, 1, 2]), TEST, ks=(2, 4), ndcg_k=2)
    assert got["recall@2"] == pytest.approx([0.5, 1.0, 0.0], abs=1e-12)
    assert got["recall@4"] == pytest.approx([1.0, 1.0, 1 / 3], abs=1e-12)
    assert got["ndcg@2"] == pytest.approx([1 / (1 + 1 / LOG2_3), 1 / LOG2_3, 0.0], abs=1e-12)
    assert got["map@2"] == pytest.approx([0.5, 0.5, 0.0], abs=1e-12)
    means = topn_metrics_from_lists(
        LISTS, np.array([0, 1, 2]), TEST, ks=(2, 4), ndcg_k=2, coverage_k=2
    )
    assert {name: float(values.mean()) for name, values in got.items()} == pytest.approx(
        {name: means[name] for name in got}, abs=1e-15
    )
    with pytest.raises(ValueError, match="repeats a movie"):
        per_user_topn(np.array([[1, 1]]), np.array([0]), TEST, ks=(2,), ndcg_k=2)


def test_known_answers_from_scores_with_seen_movies_ranked_first():
    # Seen movies get the highest scores; after excluding them the ranking is LISTS.
    # User 3 has training ratings but no test rating, so it is not evaluated.
    train = make_ratings([0, 0, 1, 3], [0, 5, 3, 2], num_users=4, num_movies=6)
    scores = np.array(
        [
            [100, 10, 9, 8, 7, 99],  # seen {0, 5}; then 1, 2, 3, 4
            [10, 8, 7, 100, 6, 9],  # seen {3}; then 0, 5, 1, 2, 4
            [7, 9, 1, 10, 0, 8],  # nothing seen; 3, 1, 5, 0, 2, 4
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=np.float64,
    )
    got = topn_metrics(fixed_scores(scores), train, TEST, ks=(2, 4), ndcg_k=2, coverage_k=2)
    assert got == pytest.approx(EXPECTED, abs=1e-12)
    top, user_rows, relevant = rank_test_users(fixed_scores(scores), train, TEST, depth=4)
    assert user_rows.tolist() == [0, 1, 2]
    assert top.tolist() == LISTS.tolist()
    assert relevant.counts()[user_rows].tolist() == [2, 1, 3]


def test_recall_divides_by_all_relevant_not_min_k():
    # One user with 4 relevant movies and both top-2 slots filled with relevant ones.
    test = make_ratings([0, 0, 0, 0], [0, 1, 2, 3], num_users=1, num_movies=5)
    got = topn_metrics_from_lists(
        np.array([[0, 1, 4]]), np.array([0]), test, ks=(2,), ndcg_k=2, coverage_k=2
    )
    assert got["recall@2"] == 0.5  # 2 / |relevant| = 2 / 4, not 2 / min(2, 4)
    assert got["ndcg@2"] == 1.0  # ideal DCG over min(|relevant|, k) = 2 positions


# ----------------------------------------------------------------------------- seen movies


def test_seen_movie_is_never_counted_even_when_also_in_test():
    # (user 0, movie 0) is in both splits (repeated rating); the scorer ranks it first.
    train = make_ratings([0], [0], num_users=1, num_movies=4)
    test = make_ratings([0, 0], [0, 2], num_users=1, num_movies=4)
    scores = np.array([[10.0, 3.0, 2.0, 1.0]])
    got = topn_metrics(fixed_scores(scores), train, test, ks=(1, 2), ndcg_k=1, coverage_k=1)
    # Movie 0 is excluded and dropped from the relevant set; the list is [1, 2, 3].
    assert got["recall@1"] == 0.0
    assert got["recall@2"] == 1.0
    assert got["coverage@1"] == 0.25
    unfiltered = topn_metrics(
        fixed_scores(scores), train, test, ks=(1, 2), ndcg_k=1, coverage_k=1, exclude_seen=False
    )
    assert unfiltered["recall@1"] == 0.5  # movie 0 counts only without exclusion


def test_user_who_saw_almost_everything_gets_padding_not_seen_movies():
    # 5 movies, user saw 4 of them, k = 3: the list is [4, -1, -1] and seen test movies
    # (impossible without repeats, but forced here) are never hits.
    train = make_ratings([0, 0, 0, 0], [0, 1, 2, 3], num_users=1, num_movies=5)
    test = make_ratings([0, 0], [4, 3], num_users=1, num_movies=5)
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    got = topn_metrics(fixed_scores(scores), train, test, ks=(3,), ndcg_k=3, coverage_k=3)
    assert got["recall@3"] == 1.0  # relevant is {4} after removing seen movie 3
    assert got["coverage@3"] == 0.2


def test_minus_inf_scores_are_padding():
    test = make_ratings([0], [1], num_users=1, num_movies=3)
    train = make_ratings([], [], num_users=1, num_movies=3)
    scores = np.array([[1.0, -np.inf, -np.inf]])
    got = topn_metrics(fixed_scores(scores), train, test, ks=(3,), ndcg_k=3, coverage_k=3)
    assert got["recall@3"] == 0.0
    assert got["coverage@3"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- random vs reference


def reference_metrics(scores, train_pairs, test_pairs, ks, ndcg_k, coverage_k, num_movies):
    """Plain-python reference implementation of the documented protocol."""
    seen: dict[int, set[int]] = {}
    for u, m in train_pairs:
        seen.setdefault(u, set()).add(m)
    relevant: dict[int, set[int]] = {}
    for u, m in test_pairs:
        if m not in seen.get(u, set()):
            relevant.setdefault(u, set()).add(m)
    sums: dict[str, float] = {}
    shown: set[int] = set()
    users = sorted(relevant)
    for u in users:
        candidates = [m for m in range(num_movies) if m not in seen.get(u, set())]
        ranked = sorted(candidates, key=lambda m: (-scores[u][m], m))
        rel = relevant[u]
        for k in ks:
            hits = sum(1 for m in ranked[:k] if m in rel)
            sums[f"recall@{k}"] = sums.get(f"recall@{k}", 0.0) + hits / len(rel)
            sums[f"precision@{k}"] = sums.get(f"precision@{k}", 0.0) + hits / k
        dcg = sum(1 / math.log2(i + 2) for i, m in enumerate(ranked[:ndcg_k]) if m in rel)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), ndcg_k)))
        sums["ndcg"] = sums.get("ndcg", 0.0) + dcg / idcg
        hits, ap = 0, 0.0
        for i, m in enumerate(ranked[:ndcg_k]):
            if m in rel:
                hits += 1
                ap += hits / (i + 1)
        sums["map"] = sums.get("map", 0.0) + ap / min(len(rel), ndcg_k)
        shown.update(ranked[:coverage_k])
    out = {key: value / len(users) for key, value in sums.items()}
    out[f"ndcg@{ndcg_k}"] = out.pop("ndcg")
    out[f"map@{ndcg_k}"] = out.pop("map")
    out[f"coverage@{coverage_k}"] = len(shown) / num_movies
    out["num_users"] = len(users)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topn_metrics_matches_plain_python_reference(seed):
    rng = np.random.default_rng(seed)
    num_users, num_movies, num_ratings = 40, 50, 700
    user_rows = rng.integers(0, num_users, num_ratings)
    movie_rows = rng.integers(0, num_movies, num_ratings)  # repeats included on purpose
    in_test = rng.random(num_ratings) < 0.3
    ratings = make_ratings(user_rows, movie_rows, num_users, num_movies)
    train, test = ratings.subset(~in_test), ratings.subset(in_test)
    scores = rng.standard_normal((num_users, num_movies))
    if seed == 2:
        scores = np.round(scores)  # many ties, also at the cut-offs: broken by movie row
    got = topn_metrics(
        fixed_scores(scores), train, test, ks=(3, 10), ndcg_k=5, coverage_k=4, batch_users=7
    )
    expected = reference_metrics(
        scores.tolist(),
        zip(user_rows[~in_test].tolist(), movie_rows[~in_test].tolist(), strict=True),
        zip(user_rows[in_test].tolist(), movie_rows[in_test].tolist(), strict=True),
        ks=(3, 10),
        ndcg_k=5,
        coverage_k=4,
        num_movies=num_movies,
    )
    assert got == pytest.approx(expected, abs=1e-12)


def test_float32_scores_and_batching_give_the_same_answer():
    rng = np.random.default_rng(5)
    ratings = make_ratings(rng.integers(0, 30, 400), rng.integers(0, 60, 400), 30, 60)
    train, test = ratings.subset(np.arange(300)), ratings.subset(np.arange(300, 400))
    scores = rng.standard_normal((30, 60))
    one = topn_metrics(fixed_scores(scores), train, test, ks=(5, 20), batch_users=512)
    many = topn_metrics(
        fixed_scores(scores.astype(np.float32)), train, test, ks=(5, 20), batch_users=3
    )
    assert one == many


def test_input_validation():
    with pytest.raises(ValueError, match="repeats a movie"):
        topn_metrics_from_lists(
            np.array([[1, 1, 2]]), np.array([0]), TEST, ks=(2,), ndcg_k=2, coverage_k=2
        )
    with pytest.raises(ValueError, match="without relevant movies"):
        topn_metrics_from_lists(
            np.array([[1, 2]]), np.array([3]), TEST, ks=(2,), ndcg_k=2, coverage_k=2
        )
    with pytest.raises(ValueError, match="cut-off 4"):
        topn_metrics_from_lists(
            LISTS[:, :3], np.array([0, 1, 2]), TEST, ks=(2, 4), ndcg_k=2, coverage_k=2
        )
    train = make_ratings([0], [0], num_users=4, num_movies=6)
    with pytest.raises(ValueError, match="shape"):
        topn_metrics(lambda rows: np.zeros((len(rows), 5)), train, TEST)
    with pytest.raises(ValueError, match="NaN"):
        topn_metrics(lambda rows: np.full((len(rows), 6), np.nan), train, TEST)
    with pytest.raises(ValueError, match="share one user and movie table"):
        topn_metrics(MostPopular().fit(train), train, make_ratings([0], [0], 4, 7))


def test_rating_metrics():
    got = rating_metrics(np.array([3.0, 4.0, 5.0, 1.0]), np.array([4.0, 4.0, 3.0, 1.0]))
    assert got["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4 + 0) / 4))
    assert got["mae"] == pytest.approx(3 / 4)
    with pytest.raises(ValueError):
        rating_metrics(np.zeros(3), np.zeros(2))


# ----------------------------------------------------------------------------- baselines


def test_most_popular_order_excludes_seen():
    # Counts: movie 2 -> 3, movie 0 -> 2, movie 3 -> 1, movie 1 -> 0.
    train = make_ratings([0, 1, 2, 0, 1, 2], [2, 2, 2, 0, 0, 3], num_users=3, num_movies=4)
    model = MostPopular().fit(train)
    assert model.counts.tolist() == [2, 0, 3, 1]
    assert model(np.array([0, 2])).tolist() == [2, 0, 3, 1]  # one row that both users share
    test = make_ratings([0, 2], [3, 0], num_users=3, num_movies=4)
    got = topn_metrics(model, train, test, ks=(1, 2), ndcg_k=1, coverage_k=1)
    # User 0 saw {0, 2}: list [3, 1] -> hit at 1. User 2 saw {2, 3}: list [0, 1] -> hit at 1.
    assert got["recall@1"] == 1.0
    assert got["coverage@1"] == 0.5


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_scores_shared_by_all_users_rank_as_the_same_row_given_to_each(exclude_seen):
    # Shared (num_movies,) scores take their own path through topn_metrics (ranked once);
    # the reference is the per-user path, fed the row broadcast to every user. Integer
    # counts make ties (broken by movie row), -inf movies are never recommended.
    rng = np.random.default_rng(3)
    for _ in range(20):
        num_users, num_movies = int(rng.integers(2, 40)), int(rng.integers(2, 150))
        pairs = rng.integers(0, [num_users, num_movies], (int(rng.integers(20, 900)), 2))
        pairs = np.unique(pairs, axis=0)
        in_test = rng.random(len(pairs)) < 0.3
        if in_test.all() or not in_test.any():
            continue
        train = make_ratings(*pairs[~in_test].T, num_users, num_movies)
        test = make_ratings(*pairs[in_test].T, num_users, num_movies)
        counts = MostPopular().fit(train).counts.copy()
        counts[rng.random(num_movies) < 0.2] = -np.inf
        kwargs = dict(ks=(1, 10, 100), batch_users=7, exclude_seen=exclude_seen)
        shared = topn_metrics(lambda rows, row=counts: row, train, test, **kwargs)
        per_user = topn_metrics(
            lambda rows, row=counts: np.broadcast_to(row, (len(rows), len(row))),
            train,
            test,
            **kwargs,
        )
        assert shared == per_user


def ease_reference(x: np.ndarray, l2: float) -> np.ndarray:
    """Column-by-column ridge regression of each movie on all other movies (diag fixed at 0)."""
    n = x.shape[1]
    weights = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        weights[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
    return weights


def test_ease_matches_columnwise_ridge_reference():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 7)) < 0.4).astype(np.float64)
    x[0, :] = 1.0  # every movie has a training rating
    user_rows, movie_rows = np.nonzero(x)
    train = make_ratings(user_rows, movie_rows, num_users=12, num_movies=7)
    model = EASE(l2=2.0).fit(train)
    expected = ease_reference(x, 2.0)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(np.arange(12)), x @ expected, rtol=1e-5, atol=1e-5)


def test_ease_restricts_to_most_rated_movies():
    # Movie counts: 0 -> 3, 1 -> 1, 2 -> 2, 3 -> 0.
    train = make_ratings([0, 1, 2, 0, 0, 1], [0, 0, 0, 1, 2, 2], num_users=3, num_movies=4)
    model = EASE(l2=1.0, max_movies=2).fit(train)
    assert model.movie_rows.tolist() == [0, 2]
    scores = model(np.array([0, 1, 2]))
    assert np.all(np.isneginf(scores[:, [1, 3]]))
    assert np.all(np.isfinite(scores[:, [0, 2]]))


def planted_ratings(seed: int = 0) -> tuple[Ratings, Ratings]:
    """Ratings from planted biases and rank-3 factors plus noise, split 80/20."""
    rng = np.random.default_rng(seed)
    num_users, num_movies, num_ratings = 300, 200, 12_000
    user_bias = rng.normal(0, 0.4, num_users)
    movie_bias = rng.normal(0, 0.4, num_movies)
    user_factors = rng.normal(0, 0.6, (num_users, 3))
    movie_factors = rng.normal(0, 0.6, (num_movies, 3))
    keys = rng.choice(num_users * num_movies, num_ratings, replace=False)
    user_rows, movie_rows = keys // num_movies, keys % num_movies
    rating = (
        3.5
        + user_bias[user_rows]
        + movie_bias[movie_rows]
        + np.einsum("rk,rk->r", user_factors[user_rows], movie_factors[movie_rows])
        + rng.normal(0, 0.3, num_ratings)
    )
    ratings = make_ratings(user_rows, movie_rows, num_users, num_movies, np.clip(rating, 0.5, 5))
    test_mask = rng.random(num_ratings) < 0.2
    return ratings.subset(~test_mask), ratings.subset(test_mask)


def test_biased_mf_beats_global_mean_and_biases_on_planted_factors():
    train, test = planted_ratings()
    model = BiasedMF(num_factors=8, epochs=30, seed=3).fit(train)
    mf = rating_metrics(model.predict(test.user_index, test.movie_index), test.rating)
    mean = rating_metrics(np.full(test.num_ratings, train.rating.mean()), test.rating)
    bias = BiasOnly().fit(train)
    biases = rating_metrics(bias.predict(test.user_index, test.movie_index), test.rating)
    assert mf["rmse"] < 0.75 * mean["rmse"]
    assert mf["rmse"] < biases["rmse"] < mean["rmse"]
    scores = model(np.array([0, 5]))
    assert scores.shape == (2, train.num_movies)
    np.testing.assert_allclose(
        model.predict(np.array([5, 5]), np.array([1, 7])),
        np.clip(scores[1, [1, 7]], *model.rating_range),
        rtol=1e-5,
    )


def test_biased_mf_is_deterministic_for_a_seed_and_handles_cold_rows():
    train, test = planted_ratings(1)
    # Drop every rating of user 0 and movie 0 from training: they must predict the mean.
    keep = (train.user_index != 0) & (train.movie_index != 0)
    train = train.subset(keep)
    first = BiasedMF(num_factors=4, epochs=3, seed=7).fit(train)
    second = BiasedMF(num_factors=4, epochs=3, seed=7).fit(train)
    other = BiasedMF(num_factors=4, epochs=3, seed=8).fit(train)
    rows = (test.user_index, test.movie_index)
    np.testing.assert_array_equal(first.predict(*rows), second.predict(*rows))
    assert not np.array_equal(first.predict(*rows), other.predict(*rows))
    assert first.predict(np.array([0]), np.array([0]))[0] == pytest.approx(first.global_mean)


def test_unfitted_baseline_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        MostPopular().scores(np.array([0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        BiasedMF().predict(np.array([0]), np.array([0]))


def fit_validation(train: Ratings, seed: int = 0) -> tuple[Ratings, Ratings]:
    """``train`` split 90/10 into (fit, validation), as prepare_data does."""
    is_validation = np.random.default_rng(seed).random(train.num_ratings) < 0.1
    return train.subset(~is_validation), train.subset(is_validation)


def test_evaluate_baselines_keys_on_planted_data(monkeypatch):
    grid = {"factors": (8,), "regularization": (1.0, 10.0), "alpha": (10.0,), "iterations": (5,)}
    monkeypatch.setattr(ials, "IALS_GRID", grid)
    train, test = planted_ratings(2)
    fit, validation = fit_validation(train)
    lines: list[str] = []
    got = evaluate_baselines(
        train, test, ks=(5, 20), log=lines.append, fit=fit, validation=validation
    )
    assert set(got) == {"most_popular", "ease", "ials", "biased_mf", "bias_only", "global_mean"}
    for name in ("most_popular", "ease", "ials", "biased_mf"):
        assert {"recall@5", "recall@20", "ndcg@10", "coverage@10", "num_users"} <= set(got[name])
    assert got["biased_mf"]["rmse"] < got["global_mean"]["rmse"]
    # The choice is recorded (which pairs are rated is random here, so iALS has nothing to
    # learn beyond the checkerboard test's known answer).
    assert got["ials"]["params"]["factors"] == 8
    assert got["ials"]["validation"]["grid_points"] == 2
    assert [line for line in lines if line.startswith("baseline ials: factors 8,")]
    assert got["ease"]["params"]["l2"] in baselines.EASE_GRID["l2"]
    assert got["ease"]["validation"]["grid_points"] == len(baselines.EASE_GRID["l2"])
    assert [line for line in lines if line.startswith("baseline ease: l2 ")]


def _without_timings(lines: list[str]) -> list[str]:
    return [re.sub(r" in \d+\.\ds", "", line) for line in lines]


def test_baseline_process_returns_what_evaluate_baselines_returns_in_process():
    train, test = planted_ratings(4)
    fit, validation = fit_validation(train)
    arguments = {"ks": (5, 20), "seed": 1, "ndcg_k": 5, "fit": fit, "validation": validation}
    here: list[str] = []
    expected = evaluate_baselines(train, test, log=here.append, **arguments)
    child: list[str] = []
    with BaselineProcess(train, test, **arguments) as process:
        got = process.result(child.append)
    names = {"most_popular", "ease", "ials", "biased_mf", "bias_only", "global_mean"}
    assert set(got) == set(expected) == names
    for name, metrics in expected.items():
        assert set(got[name]) == set(metrics), name
        for key, value in metrics.items():
            if isinstance(value, float):  # another process: equal up to rounding
                assert got[name][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)
            else:  # counts, the chosen hyperparameters
                assert got[name][key] == value, (name, key)
    assert "ndcg@5" in got["ease"]  # ndcg_k reached the child
    # The child's progress lines, replayed in its order, then how long it took.
    assert _without_timings(child[:-1]) == _without_timings(here)
    assert child[-1].startswith("baselines: fitted in a background process in ")


def test_baseline_process_that_fails_is_reported_and_the_baselines_fitted_here():
    train, test = planted_ratings(4)
    process = BaselineProcess(train, test, ks=(5,))
    process._process.kill()  # as the kernel's out-of-memory killer would
    lines: list[str] = []
    got = process.result(lines.append)
    assert lines[0].startswith("baselines: the background process failed (exit status -9)")
    assert got["most_popular"] == evaluate_baselines(train, test, ks=(5,))["most_popular"]
    process.close()  # closing twice is harmless


def test_baseline_process_imports_the_parent_s_package_not_one_in_the_current_directory(
    tmp_path, monkeypatch
):
    # `python -c` puts the current directory first on the child's path; a repository's root
    # holds a tfrs_movies of its own (here one that cannot be imported).
    (tmp_path / "tfrs_movies").mkdir()
    (tmp_path / "tfrs_movies" / "__init__.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    train, test = planted_ratings(4)
    lines: list[str] = []
    with BaselineProcess(train, test, ks=(5,)) as process:
        process.result(lines.append)
    assert not [line for line in lines if "failed" in line], lines
    assert lines[-1].startswith("baselines: fitted in a background process in ")


def test_baseline_process_is_stopped_on_close_and_the_child_never_loads_tensorflow():
    train, test = planted_ratings(4)
    with BaselineProcess(train, test, ks=(5,)) as process:
        child = process._process
    assert child.returncode is not None  # stopped, not left running
    # The child imports this module and runs the baselines' numpy code, which imports nothing
    # lazily; so what importing the module loads is what the child loads.
    imports = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; import tfrs_movies.evaluation.run_baselines; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imports.stdout.strip() == "[]"


def test_evaluate_baselines_skips_ease_and_mf_on_large_data_with_a_line(monkeypatch):
    train, test = planted_ratings(2)
    monkeypatch.setattr(baseline_suite, "EASE_MAX_CATALOGUE", train.num_movies - 1)
    monkeypatch.setattr(baseline_suite, "BIASED_MF_MAX_RATINGS", train.num_ratings - 1)
    lines: list[str] = []
    got = evaluate_baselines(train, test, ks=(5, 20), log=lines.append)
    assert set(got) == {"most_popular", "bias_only", "global_mean"}
    assert [line.split(":")[0] for line in lines] == [
        "baseline ease skipped",
        "baseline ials skipped",  # no validation split given
        "baseline biased_mf skipped",
    ]


def checkerboard() -> tuple[Ratings, np.ndarray]:
    """Two blocks: users 0-9 rated movies 0-7, users 10-19 movies 8-15; movie 16 is unrated.

    Each user misses one movie of its own block (``held_out[user]``, a different one per user).
    """
    users, movies, held_out = [], [], []
    for user in range(20):
        first = 0 if user < 10 else 8
        held_out.append(first + user % 8)
        for movie in range(first, first + 8):
            if movie != held_out[-1]:
                users.append(user)
                movies.append(movie)
    return make_ratings(users, movies, num_users=20, num_movies=17), np.array(held_out)


def test_ials_ranks_the_held_out_movie_of_the_own_block_first():
    train, held_out = checkerboard()
    model = ials.IALS(factors=2, regularization=1.0, alpha=10.0, seed=0).fit(train)
    scores = model(np.arange(20))
    assert scores.shape == (20, 17) and scores.dtype == np.float32
    assert np.all(np.isneginf(scores[:, 16]))  # never rated in training
    for user in range(20):
        other_block = np.arange(8, 16) if user < 10 else np.arange(0, 8)
        assert scores[user, held_out[user]] > scores[user, other_block].max() + 0.5
    test = make_ratings(np.arange(20), held_out, num_users=20, num_movies=17)
    assert topn_metrics(model, train, test, ks=(1,), ndcg_k=1)["recall@1"] == 1.0


def test_ials_is_deterministic_for_a_seed_and_thread_count_free():
    train, _ = planted_ratings(1)
    first = ials.IALS(factors=8, iterations=5, seed=3).fit(train)
    again = ials.IALS(factors=8, iterations=5, seed=3).fit(train)
    threaded = ials.IALS(factors=8, iterations=5, seed=3, num_threads=2).fit(train)
    other = ials.IALS(factors=8, iterations=5, seed=4).fit(train)
    for model in (again, threaded):
        np.testing.assert_array_equal(model.user_factors, first.user_factors)
        np.testing.assert_array_equal(model.movie_factors, first.movie_factors)
    assert not np.array_equal(other.user_factors, first.user_factors)
    with pytest.raises(RuntimeError, match="not fitted"):
        ials.IALS().scores(np.array([0]))


def test_ials_search_in_parallel_threads_is_the_sequential_search():
    train, _ = planted_ratings(2)
    fit, validation = fit_validation(train)
    grid = {"factors": (4, 8), "regularization": (1.0, 10.0), "alpha": (3.0,), "iterations": (4,)}

    def search(workers: int):
        return grid_search(
            lambda **params: ials.IALS(**params, seed=1), grid, fit, validation, workers=workers
        )

    before = threadpoolctl.threadpool_info()
    sequential, parallel = search(1), search(2)
    assert parallel.rows == sequential.rows and parallel.params == sequential.params
    assert len({row["ndcg@10"] for row in sequential.rows}) > 1  # the points do differ
    assert threadpoolctl.threadpool_info() == before  # BLAS threads restored


class FavouriteMovie:
    """A stand-in for IALS that puts one movie (its only hyperparameter) first for everyone."""

    def __init__(self, favourite: int, seed: int) -> None:
        self.favourite = favourite

    def fit(self, train: Ratings, log=None) -> FavouriteMovie:
        self.num_movies = train.num_movies
        return self

    def params(self) -> dict[str, float]:
        return {"favourite": self.favourite}

    def __call__(self, user_rows: np.ndarray) -> np.ndarray:
        scores = np.zeros((len(user_rows), self.num_movies), np.float32)
        scores[:, self.favourite] = 1.0
        return scores


def test_ials_hyperparameters_are_chosen_on_validation_not_test(monkeypatch):
    # Every user rated movie 0 in fit, movie 4 in validation and movie 5 in test; movies 1-3
    # are rated by nobody. Favourite 4 is best on validation, favourite 5 on test, so the
    # choice shows which split it was made on.
    monkeypatch.setattr(ials, "IALS", FavouriteMovie)
    monkeypatch.setattr(ials, "IALS_GRID", {"favourite": (5, 4, 3)})
    users = np.arange(6)
    fit = make_ratings(users, np.zeros(6), num_users=6, num_movies=6)
    validation = make_ratings(users, np.full(6, 4), num_users=6, num_movies=6)
    train = make_ratings(np.tile(users, 2), np.repeat([0, 4], 6), num_users=6, num_movies=6)
    test = make_ratings(users, np.full(6, 5), num_users=6, num_movies=6)
    choice = choose_ials(fit, validation)
    assert choice.params == {"favourite": 4}
    # Unfavoured movies tie and rank by row: movie 4 comes 5th after favourite 5, 4th after 3.
    expected = [1 / math.log2(6), 1.0, 1 / math.log2(5)]
    assert [row["ndcg@10"] for row in choice.rows] == pytest.approx(expected)
    got = evaluate_baselines(train, test, ks=(1,), fit=fit, validation=validation)
    assert got["ials"]["params"] == {"favourite": 4}
    assert got["ials"]["validation"] == {"metric": "ndcg@10", "value": 1.0, "grid_points": 3}
    assert got["ials"]["recall@1"] == 0.0  # the test-best favourite 5 would score 1.0


class FavouriteEASE(FavouriteMovie):
    """A stand-in for EASE, with the same stand-in hyperparameter as :class:`FavouriteMovie`."""

    def __init__(self, favourite: int = 3) -> None:
        super().__init__(favourite, seed=0)


def test_ease_l2_is_chosen_on_validation_not_test(monkeypatch):
    # The planted data of the iALS test above: favourite 4 wins on validation, 5 on test.
    monkeypatch.setattr(baselines, "EASE", FavouriteEASE)
    monkeypatch.setattr(baselines, "EASE_GRID", {"favourite": (5, 4, 3)})
    monkeypatch.setattr(ials, "IALS", FavouriteMovie)  # iALS is chosen too; keep it quick
    monkeypatch.setattr(ials, "IALS_GRID", {"favourite": (3,)})
    users = np.arange(6)
    fit = make_ratings(users, np.zeros(6), num_users=6, num_movies=6)
    validation = make_ratings(users, np.full(6, 4), num_users=6, num_movies=6)
    train = make_ratings(np.tile(users, 2), np.repeat([0, 4], 6), num_users=6, num_movies=6)
    test = make_ratings(users, np.full(6, 5), num_users=6, num_movies=6)
    lines: list[str] = []
    got = evaluate_baselines(train, test, ks=(1,), fit=fit, validation=validation, log=lines.append)
    assert got["ease"]["params"] == {"favourite": 4}
    assert got["ease"]["validation"] == {"metric": "ndcg@10", "value": 1.0, "grid_points": 3}
    assert got["ease"]["recall@1"] == 0.0  # the test-best favourite 5 would score 1.0
    assert "baseline ease: favourite 4 (best validation ndcg@10 1.0000 of 3 in " in "".join(lines)


@pytest.mark.parametrize("case", ["no validation", "large catalogue"])
def test_ease_without_search_fits_the_default_l2(monkeypatch, case):
    train, test = planted_ratings(3)
    fit, validation = fit_validation(train)
    if case == "no validation":
        fit, validation, reason = None, None, "no validation ratings"
    else:
        movies = np.count_nonzero(np.bincount(fit.movie_index))
        monkeypatch.setattr(baselines, "EASE_SEARCH_MAX_MOVIES", movies - 1)
        reason = f"{movies:,} movies with fit ratings > {movies - 1:,}"
    lines: list[str] = []
    model, record = baselines.fit_ease_baseline(fit, validation, train, log=lines.append)
    assert record == {"params": {"l2": 500.0}, "validation": None}
    assert lines == [f"baseline ease: l2 500 (defaults, no search: {reason})"]
    np.testing.assert_allclose(model.weights, EASE().fit(train).weights)
    with pytest.raises(ValueError, match="fit part"):
        baselines.fit_ease_baseline(None, make_ratings([0], [0], 1, 1), train)


def test_ease_logs_its_inverse_on_large_catalogues(monkeypatch):
    train, _ = planted_ratings(3)
    lines: list[str] = []
    EASE(l2=2.0).fit(train, log=lines.append)
    assert lines == []
    monkeypatch.setattr(baselines, "EASE_LOG_MIN_MOVIES", 2)
    EASE(l2=2.0).fit(train, log=lines.append)
    n = np.count_nonzero(np.bincount(train.movie_index))
    assert lines == [f"ease: l2 2, inverting the {n:,} x {n:,} item Gram matrix"]


def test_ials_without_search_on_large_data_fits_the_defaults(monkeypatch):
    monkeypatch.setattr(ials, "IALS_SEARCH_MAX_RATINGS", 100)
    train, test = planted_ratings(3)
    fit, validation = fit_validation(train)
    lines: list[str] = []
    model, record = ials.fit_ials_baseline(fit, validation, train, log=lines.append)
    assert record == {"params": ials.IALS().params(), "validation": None}
    assert model.user_factors.shape == (train.num_users, ials.IALS().factors)
    assert lines == [
        "baseline ials: factors 128, regularization 50, alpha 10, iterations 15 (defaults, no "
        f"search: {fit.num_ratings:,} fit ratings > 100)"
    ]
    with pytest.raises(ValueError, match="validation ratings"):
        choose_ials(fit, validation.subset(np.zeros(validation.num_ratings, bool)))


# ----------------------------------------------------------------------------- real ml-100k


def ml100k_u_data_path() -> pathlib.Path:
    """u.data under ``$TFRS_MOVIES_SHARED_DATA``, else under ``<repo>/../shared/data``."""
    shared = os.environ.get("TFRS_MOVIES_SHARED_DATA", REPO.parent / "shared" / "data")
    return pathlib.Path(shared) / "movielens" / "ml-100k" / "u.data"


def load_ml100k_u_data(path: pathlib.Path) -> Ratings:
    """All 100,000 ratings of ml-100k's u.data (file order) over sorted id tables."""
    raw = np.loadtxt(path, dtype=np.int64)
    user_ids, user_rows = np.unique(raw[:, 0], return_inverse=True)
    movie_ids, movie_rows = np.unique(raw[:, 1], return_inverse=True)
    ratings = make_ratings(
        user_rows, movie_rows, len(user_ids), len(movie_ids), raw[:, 2], name="ml-100k"
    )
    return ratings


def test_reference_numbers_on_ml100k():
    u_data = ml100k_u_data_path()
    if not u_data.is_file():
        pytest.skip(
            f"ml-100k not found at {u_data}; set TFRS_MOVIES_SHARED_DATA to the shared data dir"
        )
    ratings = load_ml100k_u_data(u_data)
    assert ratings.num_ratings == 100_000
    perm = np.random.default_rng(42).permutation(ratings.num_ratings)
    train, test = ratings.subset(perm[20_000:]), ratings.subset(perm[:20_000])

    popular = topn_metrics(MostPopular().fit(train), train, test)
    assert popular["num_users"] == 942
    assert popular["recall@10"] == pytest.approx(0.118, abs=0.01)
    assert popular["ndcg@10"] == pytest.approx(0.219, abs=0.01)

    ease = topn_metrics(EASE().fit(train), train, test)
    assert ease["recall@10"] >= 0.23
    assert ease["ndcg@10"] == pytest.approx(0.446, abs=0.01)

    mf = BiasedMF().fit(train)
    assert rating_metrics(mf.predict(test.user_index, test.movie_index), test.rating)["rmse"] < 0.94


def test_evaluate_pipeline_records_its_metrics_in_the_run(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    # Re-prepared from config.json, the data gives the same test split as the one passed in.
    from_config = evaluate_pipeline(run, log=silent)
    prepared = prepare_data(load_config(run / "config.json"), log=silent)
    assert evaluate_pipeline(run, prepared, log=silent) == from_config
    assert json.loads((run / "metrics.json").read_text())["pipeline"] == from_config
    rundir.verify_run(run)  # the manifest's checksum of metrics.json was updated
    orders = ["retrieval_order", "reranked", *(f"rerank_weight_{w:g}" for w in RERANK_WEIGHTS)]
    for order in orders:
        assert 0 <= from_config[order]["recall@10"] <= 1
        assert 0 <= from_config[order]["ndcg@10"] <= 1
    # Weight 0 is the retrieval order itself.
    assert from_config["rerank_weight_0"] == from_config["retrieval_order"]
    assert from_config["num_users"] == len(np.unique(prepared.test.user_index))
