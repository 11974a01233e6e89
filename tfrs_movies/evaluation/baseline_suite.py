"""All the baselines on one split: fitted on the training split, scored on the test split with
each user's training movies excluded, skipping the ones that cannot run at the data's size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tfrs_movies.data.schema import Ratings
from tfrs_movies.evaluation.baselines import BiasedMF, BiasOnly, MostPopular, fit_ease_baseline
from tfrs_movies.evaluation.ials import fit_ials_baseline
from tfrs_movies.evaluation.metrics import (
    ScoreFn,
    check_same_tables,
    rating_metrics,
    topn_metrics,
)
from tfrs_movies.log import Log, silent

# Baselines whose cost grows faster than the data are skipped on large data sets (issue 13), so
# that a 25M-rating run finishes: EASE's dense item-item inverse is O(movies^3) time and
# 8 * movies^2 bytes; BiasedMF's numpy trainer costs about 1.5 us per rating per epoch here.
EASE_MAX_CATALOGUE = 20_000
BIASED_MF_MAX_RATINGS = 2_000_000


def evaluate_baselines(
    train: Ratings,
    test: Ratings,
    ks: Sequence[int] = (10, 100),
    seed: int = 0,
    ndcg_k: int = 10,
    log: Log = silent,
    fit: Ratings | None = None,
    validation: Ratings | None = None,
) -> dict[str, dict[str, Any]]:
    """Fits every baseline on ``train`` and evaluates it on ``test`` with seen movies excluded.

    iALS and EASE are chosen on ``validation`` and refitted on ``train`` (see
    :func:`~tfrs_movies.evaluation.ials.fit_ials_baseline`,
    :func:`~tfrs_movies.evaluation.baselines.fit_ease_baseline`). When ``validation`` has no
    ratings iALS is skipped, with a line to ``log``, and EASE fits its default ``l2``.

    EASE is skipped when the catalogue has more than :data:`EASE_MAX_CATALOGUE` movies, and
    BiasedMF when ``train`` has more than :data:`BIASED_MF_MAX_RATINGS` ratings; each skip is
    one line to ``log`` and the baseline's entry is absent.

    Args:
        train: training split.
        test: test split over the same tables.
        ks: recall/precision cut-offs.
        seed: seed of the stochastic baselines (:class:`BiasedMF`, iALS).
        ndcg_k: NDCG/MAP cut-off.
        log: receives a line for each skipped baseline, iALS's and EASE's choices and progress
            lines.
        fit: the part of ``train`` iALS's and EASE's candidates are fitted on.
        validation: the rest of ``train``, on which their hyperparameters are chosen.

    Returns:
        ``{"most_popular": topn, "ease": topn | {"params", "validation"},
        "ials": topn | {"params", "validation"},
        "biased_mf": topn | {"rmse", "mae"}, "bias_only": {"rmse", "mae"},
        "global_mean": {"rmse", "mae"}}``, where ``topn`` is the dict of :func:`topn_metrics`
        and ``params``/``validation`` are iALS's and EASE's records of their choices.

    Raises:
        ValueError: ``validation`` has ratings but ``fit`` is missing.
    """
    check_same_tables(train, test)
    has_validation = validation is not None and validation.num_ratings > 0
    if has_validation and fit is None:
        raise ValueError("evaluate_baselines needs fit with validation (iALS's and EASE's choice)")
    results: dict[str, dict[str, Any]] = {}

    def topn(score_fn: ScoreFn) -> dict[str, float]:
        return topn_metrics(score_fn, train, test, ks=ks, ndcg_k=ndcg_k, exclude_seen=True, log=log)

    results["most_popular"] = topn(MostPopular().fit(train))
    if train.num_movies <= EASE_MAX_CATALOGUE:
        ease, record = fit_ease_baseline(fit, validation, train, log=log)
        results["ease"] = {**topn(ease), **record}
    else:
        log(f"baseline ease skipped: {train.num_movies:,} movies > {EASE_MAX_CATALOGUE:,}")
    if has_validation:
        ials, record = fit_ials_baseline(fit, validation, train, seed=seed, log=log)
        results["ials"] = {**topn(ials), **record}
    else:
        log("baseline ials skipped: no validation ratings to choose its hyperparameters on")
    if train.num_ratings <= BIASED_MF_MAX_RATINGS:
        mf = BiasedMF(seed=seed).fit(train)
        results["biased_mf"] = {
            **topn(mf),
            **rating_metrics(mf.predict(test.user_index, test.movie_index), test.rating),
        }
    else:
        log(
            f"baseline biased_mf skipped: {train.num_ratings:,} training ratings > "
            f"{BIASED_MF_MAX_RATINGS:,}"
        )
    bias = BiasOnly().fit(train)
    results["bias_only"] = rating_metrics(
        bias.predict(test.user_index, test.movie_index), test.rating
    )
    mean = float(train.rating.mean(dtype=np.float64))
    results["global_mean"] = rating_metrics(np.full(test.num_ratings, mean), test.rating)
    return results
