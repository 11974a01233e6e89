"""SavedModels of a run: the ScaNN retrieval index, its exact twin and the ranking model.

:func:`export_run` tunes ScaNN to the configured recall against exact search, saves the three
SavedModels with every signature (``serving_default`` included), and has :mod:`tfrs_movies.rundir`
write the vocabularies and seen movies beside them; where each file goes is the run directory's
business (:class:`~tfrs_movies.rundir.RunPaths`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
from scann import scann_ops

from tfrs_movies import rundir
from tfrs_movies.config import Config, IndexConfig
from tfrs_movies.data.prepare import PreparedData
from tfrs_movies.data.schema import GENRES
from tfrs_movies.data.vocab import Vocabulary
from tfrs_movies.fold_in_graph import FoldInGraph, reference_histories, start_histories
from tfrs_movies.log import Log, print_line
from tfrs_movies.saved_modules import index_module, ranking_module

SAVE_NAMESPACES = ["Scann"]  # ScaNN's ops must be allowed explicitly when saving


def _save(module, path: Path) -> None:
    # Keras warns once per sub-model that it has no get_config(); a SavedModel of traced
    # functions does not need one, and the warnings would bury the progress output.
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        tf.saved_model.save(
            module,
            str(path),
            signatures={"serving_default": module.serve},
            options=tf.saved_model.SaveOptions(namespace_whitelist=SAVE_NAMESPACES),
        )
    finally:
        tf_logger.setLevel(level)


def save_index(
    layer: tf.keras.layers.Layer,
    user_tower: tf.keras.layers.Layer,
    users: Vocabulary,
    movies: Vocabulary,
    dim: int,
    path: Path,
    fold_in: FoldInGraph,
    popularity: np.ndarray,
) -> None:
    """Saves a top-K index layer as a ``retrieval_index/``-style SavedModel at ``path``.

    The SavedModel has the signatures the README lists (``__call__``, ``rows``, ``search``,
    ``search_rows``, ``query_vectors``, ``fold_in``, ``recommend_for_ratings``,
    ``serving_default``).

    Args:
        layer: a built ``tfrs.layers.factorized_top_k`` layer (ScaNN or BruteForce) over the
            movies' (M, dim) vectors, identified by movie id strings.
        user_tower: maps (B,) user vocabulary indices to (B, dim) query vectors.
        users: the user vocabulary (``user_tower``'s input indices).
        movies: the movie vocabulary (for the ``rows`` signatures).
        dim: the vector size, ``dim`` above (the query signatures take (B, dim) vectors).
        path: the SavedModel folder to write.
        fold_in: folds people outside training in from their ratings.
        popularity: (M,) training ratings per movie, in ``movies`` order (the fallback of a
            person with no known movie).
    """
    module = index_module(users, movies, user_tower, layer, dim, fold_in, popularity)
    module(tf.constant(users.ids[:1]))  # fixes shapes before saving, as ScaNN requires
    module.recommend_for_ratings(tf.constant([movies.ids[:1].astype(str)]), tf.constant([[4.0]]))
    _save(module, path)


def exact_top_k(
    queries: np.ndarray, candidates: np.ndarray, k: int, chunk: int | None = None
) -> np.ndarray:
    """(num_queries, k) candidate rows of the k highest dot products, best first (numpy).

    Queries are scored ``chunk`` at a time (default: as many as fit in 256 MB of scores), so
    162k users x 62k movies needs no 38 GiB score matrix.
    """
    k = min(k, candidates.shape[0])
    chunk = chunk or max(1, 2**26 // max(1, candidates.shape[0]))
    tops = []
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ candidates.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        tops.append(np.take_along_axis(top, order, 1))
    return np.concatenate(tops) if tops else np.zeros((0, k), np.int64)


def recall_against_exact(approximate_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / k."""
    hits = [
        len(set(a[:k].tolist()) & set(e[:k].tolist()))
        for a, e in zip(approximate_ids, exact_ids, strict=True)
    ]
    return float(np.mean(hits) / min(k, exact_ids.shape[1]))


def build_scann(
    candidates: np.ndarray,
    identifiers: np.ndarray,
    k: int,
    num_leaves: int,
    num_leaves_to_search: int,
    num_reordering_candidates: int,
):
    """A TFRS ScaNN layer (no query model) indexed over ``candidates`` (N, dim).

    The same vectors and parameters give the same index, bit for bit: the k-means that trains
    its partitions starts from k-means++ centres instead of TFRS's random ones. ScaNN's random
    start is not repeatable (likely: its seeded draws come out in hash-set order): builds of
    one run's vectors differed in 17-30% of the top-10 ids of 500 random queries, also with a
    clustering seed set and one training thread, while k-means++ starts were identical over 5
    builds in a process and 3 processes, with recall against exact search of the same spread
    (README, "Performance").

    Raises:
        RuntimeError: the installed TFRS's ScaNN layer has no ``_build_searcher`` (this code
            follows tensorflow-recommenders 0.7.7, which pyproject.toml pins).
    """
    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=k,
        num_leaves=num_leaves,
        num_leaves_to_search=num_leaves_to_search,
        num_reordering_candidates=num_reordering_candidates,
    )
    if not hasattr(layer, "_build_searcher"):
        raise RuntimeError(
            "tensorflow_recommenders' ScaNN layer has no _build_searcher: install "
            "tensorflow-recommenders==0.7.7 (pyproject.toml pins it)"
        )

    def build_searcher(indexed: tf.Tensor):
        # TFRS 0.7.7's own builder (its defaults: dot product, 12 k-means iterations, 2
        # dimensions per block), with k-means++ starts (random_init=False).
        builder = scann_ops.builder(db=indexed, num_neighbors=k, distance_measure="dot_product")
        builder = builder.tree(
            num_leaves=num_leaves,
            num_leaves_to_search=num_leaves_to_search,
            training_iterations=12,
            random_init=False,
        )
        builder = builder.score_ah(dimensions_per_block=2).reorder(num_reordering_candidates)
        # A name of its own, as TFRS gives it: searchers must not share TensorFlow resources.
        return builder.build(shared_name=f"{layer.name}/{uuid.uuid4()}")

    layer._build_searcher = build_searcher
    layer.index(tf.constant(candidates), identifiers=tf.constant(identifiers))
    return layer


def tune_scann(
    candidates: np.ndarray,
    queries: np.ndarray,
    k: int,
    config: IndexConfig,
    identifiers: np.ndarray | None = None,
    log: Log = print_line,
) -> tuple[Any, dict[str, Any]]:
    """Chooses ScaNN parameters that reach ``config.target_recall`` recall@10 against exact search.

    Leaves scale as sqrt(N); the number of leaves searched (and re-ordering candidates) grows
    until the recall over ``queries`` reaches the target, or everything is searched.

    Args:
        candidates: (N, dim) float32 movie vectors.
        queries: (Q, dim) float32 query vectors (all users).
        k: how many results the index returns.
        config: the :class:`~tfrs_movies.config.IndexConfig`.
        identifiers: (N,) str ids the index returns; default the row numbers.

    Returns:
        (ScaNN layer, description with the parameters and the measured recall@10). The layer
        is the one measured (an index of the same vectors is the same; see :func:`build_scann`).
    """
    n = candidates.shape[0]
    if identifiers is None:
        identifiers = np.arange(n).astype(str)
    row_of_id = {identifier: row for row, identifier in enumerate(identifiers.tolist())}
    num_leaves = config.num_leaves or max(1, min(n, round(math.sqrt(n))))
    started = time.perf_counter()
    exact = exact_top_k(queries, candidates, 10)
    if time.perf_counter() - started >= 5:  # large runs only
        log(
            f"scann: exact top-10 of {len(queries):,} queries for the recall check "
            f"({time.perf_counter() - started:.0f}s)"
        )
    if config.num_leaves_to_search:
        schedule = [config.num_leaves_to_search]
    else:
        schedule = sorted({max(1, math.ceil(num_leaves * f)) for f in (0.1, 0.2, 0.35, 0.5, 1.0)})
    for searched in schedule:
        reorder = config.num_reordering_candidates or max(k, 4 * k * searched // num_leaves, 100)
        started = time.perf_counter()
        layer = build_scann(candidates, identifiers, k, num_leaves, searched, min(reorder, n))
        build_seconds = time.perf_counter() - started
        answers = np.concatenate(
            [layer(queries[s : s + 4096])[1].numpy() for s in range(0, len(queries), 4096)]
        )
        approximate = np.vectorize(lambda b: row_of_id[b.decode()])(answers[:, :10])
        recall = recall_against_exact(approximate, exact, 10)
        description = {
            "num_leaves": num_leaves,
            "num_leaves_to_search": searched,
            "num_reordering_candidates": min(reorder, n),
            "k": k,
            "recall_at_10_vs_exact": round(recall, 4),
            "num_queries": int(len(queries)),
            "num_candidates": int(n),
            "build_seconds": round(build_seconds, 3),
        }
        log(
            f"scann: leaves {num_leaves}, searched {searched}, reorder {min(reorder, n)}: "
            f"recall@10 vs exact {recall:.4f}"
        )
        if recall >= config.target_recall:
            break
    return layer, description


def export_run(
    model,
    prepared: PreparedData,
    config: Config,
    metrics: dict[str, Any],
    run_dir: Path,
    log: Log = print_line,
) -> None:
    """Writes the indexes, the ranking model, vocabularies and seen movies into ``run_dir``.

    Args:
        model: the trained multitask model (its towers and rating head are saved).
        prepared: the data it was trained on (vocabularies, titles, training ratings).
        config: the run's config (``index`` section).
        metrics: receives ``index`` (the chosen ScaNN parameters and their measured recall)
            and ``export_seconds``.
        run_dir: the (partial) run directory to write into.
        log: receives progress lines.
    """
    started = time.perf_counter()
    paths = rundir.RunPaths(run_dir)
    user_rows = prepared.user_row_of_vocab()[1:]
    movie_rows = prepared.movie_row_of_vocab()[1:]
    user_ids = prepared.ratings.user_ids[user_rows].astype(str)
    movie_ids = prepared.ratings.movie_ids[movie_rows].astype(str)
    users, movies = Vocabulary(user_ids), Vocabulary(movie_ids)
    catalogue = model.catalogue_vectors().numpy()[1:]
    dim = catalogue.shape[1]
    queries = model.user_tower(tf.range(1, prepared.num_users + 1)).numpy()

    seen_counts = np.bincount(
        prepared.user_vocab_of_row[prepared.train.user_index], minlength=prepared.num_users + 1
    )
    # Enough candidates that, for almost every user, num_candidates survive the exclusion of
    # seen movies; the Recommender falls back to exact search for the rest.
    k = int(min(len(movie_ids), config.index.k + np.percentile(seen_counts[1:], 99)))
    layer, index_description = tune_scann(
        catalogue, queries, k, config.index, identifiers=movie_ids, log=log
    )
    stage = time.perf_counter()

    def saved(what: str) -> None:
        # Large runs only (each save then takes seconds): small ones keep their summary line.
        nonlocal stage
        if time.perf_counter() - stage >= 5:
            log(f"export: saved {what} ({time.perf_counter() - stage:.0f}s)")
        stage = time.perf_counter()

    # The training-split ratings (validation part included), by vocabulary index: the seen
    # lists, and the histories of the fold-in's reference people.
    seen_user = prepared.user_vocab_of_row[prepared.train.user_index]
    seen_movie = prepared.movie_vocab_of_row[prepared.train.movie_index]
    keep = (seen_user > 0) & (seen_movie > 0)
    history = (seen_user[keep], seen_movie[keep], prepared.train.rating[keep])
    fold_in = FoldInGraph(
        model.catalogue_vectors().numpy(),
        config.model.temperature,
        reference_histories(*history),
        start_histories(*history),
    )
    popularity = prepared.movie_frequencies[1:]
    save_index(
        layer, model.user_tower, users, movies, dim, paths.retrieval_index, fold_in, popularity
    )
    saved("the ScaNN retrieval index")
    brute_force = tfrs.layers.factorized_top_k.BruteForce(k=k)
    brute_force.index(tf.constant(catalogue), identifiers=tf.constant(movie_ids))
    save_index(
        brute_force, model.user_tower, users, movies, dim, paths.exact_index, fold_in, popularity
    )
    saved("the exact index")

    ranking = ranking_module(users, movies, model, dim, fold_in)
    ranking(tf.constant(user_ids[:1]), tf.constant(movie_ids[:1]))
    _save(ranking, paths.ranking_model)
    saved("the ranking model")

    rundir.write_vocab(
        run_dir,
        user_ids=user_ids,
        movie_ids=movie_ids,
        titles=prepared.ratings.movie_titles[movie_rows],
        genres=[
            "|".join(GENRES[g] for g in np.flatnonzero(hot))
            for hot in prepared.ratings.movie_genres[movie_rows]
        ],
        num_train_ratings=prepared.movie_frequencies[1:],
        movie_vectors=catalogue,
    )
    order = np.lexsort((seen_movie[keep], seen_user[keep]))
    seen_user_rows = Vocabulary.row_of_index(seen_user[keep])
    indptr = np.concatenate([[0], np.cumsum(np.bincount(seen_user_rows, minlength=len(users)))])
    rundir.write_seen(run_dir, indptr, Vocabulary.row_of_index(seen_movie[keep][order]))

    metrics["index"] = index_description
    metrics["export_seconds"] = round(time.perf_counter() - started, 2)
    log(f"exported indexes and ranking model in {metrics['export_seconds']:.1f}s")
