"""Evaluation of an exported run as downstream code uses it: the Recommender, end to end.

:func:`evaluate_pipeline` loads a complete run with :class:`~tfrs_movies.recommend.Recommender`
(ScaNN candidates, seen movies dropped, re-scored by the ranking model), measures top-N metrics on
the test split in retrieval order, re-ranked, and along a curve of re-rank weights, and records
them as ``"pipeline"`` in the run's ``metrics.json``. It runs after the run is finalized, so
training never imports the Recommender.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies import rundir
from tfrs_movies.config import load_config
from tfrs_movies.data.prepare import PreparedData, prepare_data
from tfrs_movies.errors import ArtifactError
from tfrs_movies.evaluation.metrics import PROGRESS_SECONDS, topn_metrics_from_lists
from tfrs_movies.log import Log, print_line, silent
from tfrs_movies.recommend import DEFAULT_RERANK_WEIGHT, Recommender

# The re-rank curve: 0 is retrieval order; 1000 orders essentially by predicted rating.
RERANK_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 1000.0)
PIPELINE_USERS_PER_CALL = 4096  # users per Recommender call (bounds its memory)


def pipeline_metrics(
    recommender: Recommender, prepared: PreparedData, k: int = 10, log: Log = silent
) -> dict[str, Any]:
    """Top-N metrics of a loaded run on the test split: retrieval order vs re-ranked.

    Every order is :meth:`Recommender.recommend`'s (``num_candidates`` = 100, seen movies
    excluded) at one re-rank weight, so this measures what downstream code gets and what
    re-scoring adds. The candidates are retrieved and re-scored once, through
    :meth:`Recommender.rescored_candidates`, and ordered for every weight.

    Args:
        recommender: the loaded run.
        prepared: the data the run was trained on (test split and id tables).
        k: list length and metric cut-off.
        log: receives a progress line every :data:`PROGRESS_SECONDS` (large data only).

    Returns:
        ``{order: {"recall@k", "ndcg@k"}}`` for ``retrieval_order``, ``reranked`` (the default
        weight) and each ``rerank_weight_<w>``, plus ``num_users``, ``default_rerank_weight``
        and ``protocol``.
    """
    test_users = np.unique(prepared.test.user_index)
    test_users = test_users[prepared.user_vocab_of_row[test_users] > 0]
    user_ids = prepared.ratings.user_ids[test_users].astype(str).tolist()
    row_of_movie = {m: r for r, m in enumerate(prepared.ratings.movie_ids.astype(str).tolist())}
    # The recommender's movie rows as rows of ``prepared`` (its last entry maps padding -1).
    row_of_recommender_row = np.array(
        [row_of_movie[str(m)] for m in recommender.movie_ids] + [-1], np.int64
    )
    relevant = prepared.test.subset(np.isin(prepared.test.user_index, test_users))
    orders = {"retrieval_order": 0.0, "reranked": DEFAULT_RERANK_WEIGHT}
    orders.update({f"rerank_weight_{w:g}": w for w in RERANK_WEIGHTS})
    tops: dict[str, list[np.ndarray]] = {name: [] for name in orders}
    started = shown = time.perf_counter()
    # Candidates are retrieved and re-scored once and ordered for every weight; in chunks of
    # users, because one call for 162k users ran out of memory (24 GiB) at 25M ratings.
    for start in range(0, len(user_ids), PIPELINE_USERS_PER_CALL):
        rescored = recommender.rescored_candidates(
            user_ids[start : start + PIPELINE_USERS_PER_CALL], num_candidates=100
        )
        for name, weight in orders.items():
            tops[name].append(
                row_of_recommender_row[rescored.top_rows(k, weight, recommender.temperature)]
            )
        if time.perf_counter() - shown >= PROGRESS_SECONDS:
            shown = time.perf_counter()
            log(
                f"pipeline: {start + len(rescored.lengths):,}/{len(user_ids):,} users "
                f"({shown - started:.0f}s)"
            )
    results: dict[str, Any] = {}
    for name, top in tops.items():
        metrics = topn_metrics_from_lists(
            np.concatenate(top) if top else np.zeros((0, k), np.int64),
            test_users,
            relevant,
            ks=(k,),
            ndcg_k=k,
            coverage_k=k,
        )
        results[name] = {key: metrics[key] for key in (f"recall@{k}", f"ndcg@{k}")}
    results["num_users"] = len(user_ids)
    results["default_rerank_weight"] = DEFAULT_RERANK_WEIGHT
    results["protocol"] = (
        f"Recommender.recommend(k={k}, num_candidates=100, exclude_seen=True) on the exported "
        "run, final order = retrieval_score / temperature + rerank_weight * predicted_rating "
        "(retrieval_order: weight 0; rerank_weight_1000: essentially by predicted rating); "
        "users of the test split that are in the training vocabulary"
    )
    return results


def evaluate_pipeline(
    run_dir: str | Path, prepared: PreparedData | None = None, log: Log = print_line
) -> dict[str, Any]:
    """Scores a complete run's Recommender and adds the result to its ``metrics.json``.

    Args:
        run_dir: a complete (finalized) run directory.
        prepared: the data the run was trained on; None re-prepares it from the run's
            ``config.json`` (same source, split and seeds, hence the same test split).
        log: receives progress lines.

    Returns:
        The ``"pipeline"`` entry now in ``metrics.json`` (see :func:`pipeline_metrics`).

    Raises:
        ArtifactError: the run does not verify, or the re-prepared data's users or movies are
            not the run's (the data source changed since training).
        DataError: with ``prepared=None``, the run's data source cannot be read.
    """
    paths = rundir.RunPaths(Path(run_dir))
    recommender = Recommender.load(paths.root)
    if prepared is None:
        prepared = prepare_data(load_config(paths.config), log=log)
        vocab_users = prepared.ratings.user_ids[prepared.user_row_of_vocab()[1:]].astype(str)
        vocab_movies = prepared.ratings.movie_ids[prepared.movie_row_of_vocab()[1:]].astype(str)
        if not (
            np.array_equal(vocab_users, np.asarray(recommender.user_ids, str))
            and np.array_equal(vocab_movies, np.asarray(recommender.movie_ids, str))
        ):
            raise ArtifactError(
                f"the data named in {paths.config} no longer gives the users and movies "
                f"{paths.root} was trained on (the source changed?); pass the prepared data "
                "the run was trained on"
            )
    started = time.perf_counter()
    results = pipeline_metrics(recommender, prepared, log=log)
    rundir.update_metrics(paths.root, {"pipeline": results})
    log(
        f"exported pipeline on {results['num_users']:,} test users "
        f"({time.perf_counter() - started:.1f}s): recall@10 retrieval order "
        f"{results['retrieval_order']['recall@10']:.4f}, re-ranked "
        f"{results['reranked']['recall@10']:.4f}; ndcg@10 "
        f"{results['retrieval_order']['ndcg@10']:.4f} vs {results['reranked']['ndcg@10']:.4f}"
    )
    return results
