"""Evaluation of a trained model on the test split, as DESIGN's protocol says, and its summary.

:func:`evaluate_model` computes the TFRS factorized top-K accuracy, the per-user top-N metrics
(seen movies excluded) and RMSE/MAE; :func:`protocol` names what every number refers to;
:func:`format_metrics` prints the headline table, the model beside the baselines of
:mod:`~tfrs_movies.evaluation.run_baselines`.

TensorFlow is imported inside the functions that need it: ``tfrs-movies evaluate`` and
``compare`` import :func:`format_metrics` and :data:`HEADLINE_METRICS` and would otherwise wait
about 3 s for TensorFlow they never use (measured: 3.2 s vs 0.13 s to start).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tfrs_movies.config import Config
from tfrs_movies.data.prepare import PreparedData
from tfrs_movies.evaluation.metrics import (
    PROGRESS_SECONDS,
    ScoreFn,
    rating_metrics,
    topn_metrics,
)
from tfrs_movies.log import Log, print_line

# The factorized top-K metric scores every movie for every test rating: O(test x movies), about
# 800 s for 5M test ratings x 62k movies here. Above this many test ratings it is computed on a
# seeded sample of them (the protocol says so); ml-100k's 20,000 are all used.
FACTORIZED_MAX_RATINGS = 200_000


def protocol(prepared: PreparedData, config: Config) -> dict[str, Any]:
    """Names the dataset, split and evaluation protocol that every reported number refers to.

    Args:
        prepared: the prepared data (dataset name and split sizes).
        config: the run's config (split settings).

    Returns:
        A JSON-ready dict, stored as ``metrics.json["protocol"]``.
    """
    d = config.data
    return {
        "dataset": prepared.ratings.name,
        "split": d.split,
        "test_fraction": d.test_fraction if d.split != "leave_last_n" else None,
        "leave_last_n": d.leave_last_n if d.split == "leave_last_n" else None,
        "split_seed": d.split_seed,
        "validation_fraction": d.validation_fraction,
        "validation_max_ratings": d.validation_max_ratings,
        "model_fitted_on": "the training split minus the validation carve"
        if prepared.fit.num_ratings < prepared.train.num_ratings
        else "the whole training split"
        + (
            " (refitted for the epoch count chosen on the validation carve)"
            if d.validation_fraction > 0
            else ""
        ),
        "num_train_ratings": prepared.train.num_ratings,
        "num_test_ratings": prepared.test.num_ratings,
        "factorized_top_k": "TFRS FactorizedTopK over all vocabulary movies, per test rating, "
        "seen movies not excluded (the TFRS tutorials' metric)"
        + (
            f"; on a sample of {FACTORIZED_MAX_RATINGS:,} test ratings (seed split_seed)"
            if prepared.test.num_ratings > FACTORIZED_MAX_RATINGS
            else ""
        ),
        "per_user": "per test user, the user's training-split movies excluded from the ranking; "
        "every test rating is relevant (binary); recall = hits / relevant; NDCG with ideal DCG "
        "over min(relevant, k); coverage = share of all movies in any user's top-k",
        "rating": "RMSE and MAE over the test ratings; the model's and bias_only's predictions "
        "are not clipped, biased_mf's are clipped to the training rating range",
    }


def model_scores(model, prepared: PreparedData) -> ScoreFn:
    """A score function over dataset rows for :func:`~tfrs_movies.evaluation.topn_metrics`.

    Args:
        model: the trained multitask model (its user tower and catalogue vectors are used).
        prepared: the data the model was trained on.

    Returns:
        ``score_fn(user_rows) -> (len(user_rows), num_table_movies)`` retrieval scores; movies
        outside the vocabulary score -inf (the model cannot retrieve them).
    """
    import tensorflow as tf

    catalogue = model.catalogue_vectors().numpy()
    movie_rows = prepared.movie_row_of_vocab()[1:]
    num_table_movies = prepared.ratings.num_movies

    def score_fn(user_rows: np.ndarray) -> np.ndarray:
        user_index = prepared.user_vocab_of_row[user_rows]
        queries = model.user_tower(tf.constant(user_index)).numpy()
        scores = np.full((len(user_rows), num_table_movies), -np.inf, np.float32)
        scores[:, movie_rows] = queries @ catalogue[1:].T
        return scores

    return score_fn


def evaluate_model(
    model,
    prepared: PreparedData,
    config: Config,
    log: Log = print_line,
) -> dict[str, Any]:
    """Evaluates the model on the test split as DESIGN's protocol says.

    Args:
        model: the trained multitask model.
        prepared: the data it was trained on (``train`` is what "seen" means).
        config: the run's config (``eval`` section: cut-offs).
        log: receives progress lines.

    Returns:
        ``{"protocol": ..., "model": {metric: value}}``; a run adds ``"baselines"`` (see
        :func:`~tfrs_movies.evaluation.run_baselines.evaluate_run_baselines`).
    """
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    e = config.eval
    started = time.perf_counter()
    test_inputs = prepared.model_inputs(prepared.test)
    catalogue = model.catalogue_vectors()
    # A cut-off at or beyond the catalogue size is trivially 1.0; such ks are reported so.
    ks = tuple(k for k in e.factorized_ks if k < prepared.num_movies)
    results: dict[str, float] = {
        f"factorized_top_{k}": 1.0 for k in e.factorized_ks if k >= prepared.num_movies
    }
    if ks:
        candidates = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
        candidates.index(catalogue[1:], identifiers=tf.range(1, prepared.num_movies + 1))
        factorized = tfrs.metrics.FactorizedTopK(candidates=candidates, ks=ks)
    num_test = len(test_inputs["user"])
    in_sample = np.ones(num_test, bool)
    if num_test > FACTORIZED_MAX_RATINGS:
        in_sample[:] = False
        rng = np.random.default_rng(config.data.split_seed)
        in_sample[rng.choice(num_test, FACTORIZED_MAX_RATINGS, replace=False)] = True
    predictions = []
    shown = time.perf_counter()
    for start in range(0, num_test, 8192):
        if time.perf_counter() - shown >= PROGRESS_SECONDS:
            shown = time.perf_counter()
            log(
                f"scored {start:,}/{num_test:,} test ratings "
                f"(factorized top-K on {int(in_sample.sum()):,} of them, RMSE on all)"
            )
        batch = {key: value[start : start + 8192] for key, value in test_inputs.items()}
        timestamps = batch["timestamp"] if config.model.use_timestamp else None
        sample = in_sample[start : start + 8192]
        if ks and sample.any():
            queries = model.user_tower(
                batch["user"][sample], None if timestamps is None else timestamps[sample]
            )
            movies = batch["movie"][sample]
            factorized.update_state(
                queries, tf.gather(catalogue, movies), true_candidate_ids=movies
            )
        predictions.append(model.predict_ratings(batch["user"], batch["movie"]).numpy())
    if ks:
        results.update(
            {
                f"factorized_top_{k}": float(v.numpy())
                for k, v in zip(ks, factorized.result(), strict=True)
            }
        )
    results.update(rating_metrics(np.concatenate(predictions), prepared.test.rating))
    results.update(
        topn_metrics(
            model_scores(model, prepared),
            prepared.train,
            prepared.test,
            ks=e.recall_ks,
            ndcg_k=e.ndcg_k,
            log=log,
        )
    )
    metrics: dict[str, Any] = {"protocol": protocol(prepared, config), "model": results}
    log(f"evaluated model in {time.perf_counter() - started:.1f}s")
    return metrics


# The metrics every table of runs shows (train's summary, compare, the tests).
HEADLINE_METRICS = (
    "recall@10",
    "recall@100",
    "ndcg@10",
    "coverage@10",
    "factorized_top_100",
    "rmse",
    "mae",
)


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table: the model beside the baselines, one column per headline metric.

    Args:
        metrics: the contents of a run's ``metrics.json`` (``model`` and ``protocol`` needed).

    Returns:
        The table and a line naming the dataset and split, without a final newline.
    """
    rows = {"model": metrics["model"], **metrics.get("baselines", {})}
    keys = [k for k in HEADLINE_METRICS if any(k in row for row in rows.values())]
    width = max(len(name) for name in rows) + 2
    lines = ["".ljust(width) + "".join(k.rjust(20) for k in keys)]
    for name, row in rows.items():
        cells = [f"{row[k]:.4f}" if k in row else "-" for k in keys]
        lines.append(name.ljust(width) + "".join(c.rjust(20) for c in cells))
    split = metrics["protocol"]
    lines.append(
        f"({split['dataset']}, {split['split']} split seed {split['split_seed']}, test ratings "
        f"{split['num_test_ratings']:,}; per-user metrics exclude training movies)"
    )
    return "\n".join(lines)
