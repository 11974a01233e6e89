"""How well the Recommender serves people who were not in training.

Protocol (issue: "add your own ratings"): hold a seeded fraction of users out of training
entirely; train on everyone else; give :meth:`Recommender.recommend_for_ratings` ``num_given``
of each held-out user's ratings (the earliest, as a new user would rate first) and measure
Recall@k / NDCG@k on the rest of their ratings. Most-popular, computed from the training
users and with the given movies excluded, is scored on the same users and the same targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.config import Config
from tfrs_movies.data import load_source
from tfrs_movies.data.schema import Ratings
from tfrs_movies.evaluation import topn_metrics_from_lists
from tfrs_movies.log import Log, print_line
from tfrs_movies.recommend import Recommender
from tfrs_movies.train import train_and_evaluate


def hold_out_users(ratings: Ratings, fraction: float, seed: int) -> tuple[Ratings, np.ndarray]:
    """Removes a seeded ``fraction`` of users entirely.

    Args:
        ratings: the whole dataset.
        fraction: share of users to hold out (at least one user is).
        seed: seeds the choice of users.

    Returns:
        (ratings of the remaining users, (H,) user-table rows held out).
    """
    users = np.unique(ratings.user_index)
    rng = np.random.default_rng([seed, 7])
    held_out = np.sort(rng.choice(users, max(1, round(fraction * len(users))), replace=False))
    return ratings.subset(~np.isin(ratings.user_index, held_out)), held_out


def evaluate_new_users(
    config: Config,
    workdir: str | Path,
    held_out_fraction: float = 0.1,
    num_given: int = 10,
    k: int = 10,
    ratings: Ratings | None = None,
    log: Log = print_line,
) -> dict[str, Any]:
    """Trains without the held-out users, then serves them from a few ratings each.

    Args:
        config: the training config (its data source is loaded unless ``ratings`` is given).
        workdir: run directory for the model trained without the held-out users.
        held_out_fraction: share of users kept out of training.
        num_given: ratings given to ``recommend_for_ratings``; users with at most this many
            ratings are skipped (nothing would be left to predict).
        k: list length for Recall@k / NDCG@k.
        ratings: the dataset to use instead of loading ``config.data.source``.
        log: receives progress lines.

    Returns:
        ``{"recommender": {...}, "most_popular": {...}, "num_users": H, ...}``.
    """
    d = config.data
    if ratings is None:
        ratings = load_source(d.source, manual_dir=d.manual_dir, data_dir=d.data_dir)
    kept, held_out = hold_out_users(ratings, held_out_fraction, d.split_seed)
    log(f"held out {len(held_out)} of {len(np.unique(ratings.user_index))} users")
    result = train_and_evaluate(config, workdir, ratings=kept, log=log)
    summary = measure_new_users(
        Recommender.load(result.run_dir), ratings, held_out, num_given=num_given, k=k, log=log
    )
    summary["held_out_fraction"] = held_out_fraction
    summary["run_dir"] = str(result.run_dir)
    return summary


def measure_new_users(
    recommender: Recommender,
    ratings: Ratings,
    held_out: np.ndarray,
    num_given: int = 10,
    k: int = 10,
    log: Log = print_line,
) -> dict[str, Any]:
    """Serves each held-out user from their earliest ``num_given`` ratings; scores the rest.

    Args:
        recommender: loaded from a run trained without ``held_out``.
        ratings: the whole dataset (held-out users included).
        held_out: (H,) user-table rows kept out of training.
        num_given: ratings given per user, the earliest first.
        k: list length for Recall@k / NDCG@k.
        log: receives the summary line.

    Returns:
        Recall@k / NDCG@k of the recommender and of most-popular on the same users.
    """
    kept = ratings.subset(~np.isin(ratings.user_index, held_out))
    popularity = np.bincount(kept.movie_index, minlength=ratings.num_movies).astype(np.float64)
    known = set(recommender.movie_ids.tolist())

    target_rows, user_rows, lists, popular_lists = [], [], [], []
    for user in held_out:
        mine = np.flatnonzero(ratings.user_index == user)
        mine = mine[np.argsort(ratings.timestamp[mine], kind="stable")]
        movie_ids = ratings.movie_ids[ratings.movie_index[mine]].astype(str)
        usable = np.array([m in known for m in movie_ids])
        if usable[:num_given].sum() < num_given or len(mine) <= num_given:
            continue
        given, rest = mine[:num_given], mine[num_given:]
        answer = recommender.recommend_for_ratings(
            {movie_ids[i]: float(ratings.rating[given[i]]) for i in range(num_given)}, k=k
        )
        lists.append([r.movie_id for r in answer])
        scores = popularity.copy()
        scores[ratings.movie_index[given]] = -np.inf
        popular_lists.append(np.argsort(-scores, kind="stable")[:k])
        target_rows.append(rest)
        user_rows.append(user)

    row_of_movie = {m: r for r, m in enumerate(ratings.movie_ids.astype(str).tolist())}
    targets = ratings.subset(np.concatenate(target_rows))
    user_rows_arr = np.asarray(user_rows)
    top = np.full((len(lists), k), -1, np.int64)
    for i, ids in enumerate(lists):
        top[i, : len(ids)] = [row_of_movie[m] for m in ids]
    ours = topn_metrics_from_lists(top, user_rows_arr, targets, ks=(k,), ndcg_k=k, coverage_k=k)
    popular = topn_metrics_from_lists(
        np.asarray(popular_lists), user_rows_arr, targets, ks=(k,), ndcg_k=k, coverage_k=k
    )
    keys = (f"recall@{k}", f"ndcg@{k}")
    summary = {
        "recommender": {key: ours[key] for key in keys},
        "most_popular": {key: popular[key] for key in keys},
        "num_users": len(user_rows),
        "num_given": num_given,
        "protocol": "held-out users never seen in training; the earliest num_given ratings "
        "are given to recommend_for_ratings; relevant = every later rating of the user",
    }
    log(
        f"new users ({len(user_rows)}): recall@{k} recommender {ours[keys[0]]:.4f} vs "
        f"most-popular {popular[keys[0]]:.4f}; ndcg@{k} {ours[keys[1]]:.4f} vs "
        f"{popular[keys[1]]:.4f}"
    )
    return summary
