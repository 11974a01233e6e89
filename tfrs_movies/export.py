"""Writes the run directory: indexes, ranking model, metadata, metrics and manifest.

Layout (the contract with downstream code; see the README):

    config.json, metrics.json, manifest.json
    retrieval_index/   SavedModel: ScaNN; __call__(user_ids [B] string)
                       -> (scores [B, K], movie ids [B, K])
    exact_index/       SavedModel: brute force, same signature
    ranking_model/     SavedModel: __call__(user_ids [B], movie_ids [B]) -> ratings [B]
    vocab/             movies.csv, users.txt, movie_vectors.npy
    seen/              indptr.npy, movies.npy (CSR of each user's training movies)
    checkpoints/, tensorboard/

Everything is written into ``<run>.partial`` and renamed into place by :func:`finalize_run`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.data.schema import GENRES

FORMAT_VERSION = 1
SAVE_NAMESPACES = ["Scann"]  # ScaNN's ops must be allowed explicitly when saving


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for name in (
        "tensorflow",
        "tf-keras",
        "tensorflow-recommenders",
        "scann",
        "tensorflow-datasets",
        "tfrs-movies",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _index_module(user_ids: np.ndarray, movie_ids: np.ndarray, user_tower, layer, dim: int):
    """A tf.Module: string user ids (or query vectors) in, (scores, movie ids) out.

    ``rows``/``search_rows`` return positions in ``vocab/movies.csv`` instead of ids, so that
    the Recommender never handles strings for the hundreds of candidates per user.
    """
    import tensorflow as tf

    class IndexModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.user_lookup = tf.keras.layers.StringLookup(
                vocabulary=list(user_ids), num_oov_indices=1, mask_token=None
            )
            self.movie_lookup = tf.keras.layers.StringLookup(
                vocabulary=list(movie_ids), num_oov_indices=1, mask_token=None
            )
            self.user_tower = user_tower
            self.index = layer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def rows(self, user_ids):
            scores, movie_ids = self.__call__(user_ids)
            return scores, self.movie_lookup(movie_ids) - 1

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="queries")])
        def search_rows(self, queries):
            scores, movie_ids = self.index(queries)
            return scores, self.movie_lookup(movie_ids) - 1

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def __call__(self, user_ids):
            return self.index(self.user_tower(self.user_lookup(user_ids)))

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="queries")])
        def search(self, queries):
            return self.index(queries)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def query_vectors(self, user_ids):
            return self.user_tower(self.user_lookup(user_ids))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def serve(self, user_ids):
            scores, movie_ids = self.__call__(user_ids)
            return {"scores": scores, "movie_ids": movie_ids}

    return IndexModule()


def _ranking_module(user_ids: np.ndarray, movie_ids: np.ndarray, model, dim: int):
    """A tf.Module: (user id, movie id) strings in, predicted ratings out."""
    import tensorflow as tf

    class RankingModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.user_lookup = tf.keras.layers.StringLookup(
                vocabulary=list(user_ids), num_oov_indices=1, mask_token=None
            )
            self.movie_lookup = tf.keras.layers.StringLookup(
                vocabulary=list(movie_ids), num_oov_indices=1, mask_token=None
            )
            self.user_tower = model.user_tower
            self.movie_tower = model.movie_tower
            self.rating_head = model.rating_head

        def _rate(self, user_index, user_vectors, movie_ids):
            # movie_ids: [B, C]; every user's row is scored against its own C candidates.
            shape = tf.shape(movie_ids)
            movie_index = self.movie_lookup(tf.reshape(movie_ids, [-1]))
            repeat = lambda t: tf.repeat(t, shape[1], axis=0)  # noqa: E731
            ratings = self.rating_head(
                repeat(user_index), movie_index, repeat(user_vectors), self.movie_tower(movie_index)
            )
            return tf.reshape(ratings, shape)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([None], tf.string, name="movie_ids"),
            ]
        )
        def __call__(self, user_ids, movie_ids):
            return self.score_candidates(user_ids, movie_ids[:, None])[:, 0]

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([None, None], tf.string, name="movie_ids"),
            ]
        )
        def score_candidates(self, user_ids, movie_ids):
            user_index = self.user_lookup(user_ids)
            return self._rate(user_index, self.user_tower(user_index), movie_ids)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, dim], tf.float32, name="user_vectors"),
                tf.TensorSpec([None, None], tf.string, name="movie_ids"),
            ]
        )
        def score_vectors(self, user_vectors, movie_ids):
            # A user outside training: their vector is given; their rating bias is the OOV row's.
            user_index = tf.zeros(tf.shape(user_vectors)[:1], tf.int64)
            return self._rate(user_index, user_vectors, movie_ids)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([None], tf.string, name="movie_ids"),
            ]
        )
        def serve(self, user_ids, movie_ids):
            return {"predicted_rating": self.__call__(user_ids, movie_ids)}

    return RankingModule()


def _save(module, path: Path) -> None:
    import logging

    import tensorflow as tf

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


def exact_top_k(queries: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """(num_queries, k) candidate rows of the k highest dot products, best first (numpy)."""
    k = min(k, candidates.shape[0])
    scores = queries @ candidates.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


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
    """A TFRS ScaNN layer (no query model) indexed over ``candidates`` (N, dim)."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=k,
        num_leaves=num_leaves,
        num_leaves_to_search=num_leaves_to_search,
        num_reordering_candidates=num_reordering_candidates,
    )
    layer.index(tf.constant(candidates), identifiers=tf.constant(identifiers))
    return layer


def tune_scann(
    candidates: np.ndarray,
    queries: np.ndarray,
    k: int,
    config,
    identifiers: np.ndarray | None = None,
    log: Callable[[str], None] = print,
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
        is the one measured: re-indexing would retrain ScaNN's partitions and change its recall.
    """
    n = candidates.shape[0]
    if identifiers is None:
        identifiers = np.arange(n).astype(str)
    row_of_id = {identifier: row for row, identifier in enumerate(identifiers.tolist())}
    num_leaves = config.num_leaves or max(1, min(n, round(math.sqrt(n))))
    exact = exact_top_k(queries, candidates, 10)
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
    prepared,
    config,
    metrics: dict[str, Any],
    run_dir: Path,
    log: Callable[[str], None] = print,
) -> None:
    """Writes the indexes, the ranking model, vocabularies and seen movies into ``run_dir``.

    ``metrics["index"]`` receives the chosen ScaNN parameters and their measured recall.
    """
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    started = time.perf_counter()
    user_rows = prepared.user_row_of_vocab()[1:]
    movie_rows = prepared.movie_row_of_vocab()[1:]
    user_ids = prepared.ratings.user_ids[user_rows].astype(str)
    movie_ids = prepared.ratings.movie_ids[movie_rows].astype(str)
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
    scann_module = _index_module(user_ids, movie_ids, model.user_tower, layer, dim)
    scann_module(tf.constant(user_ids[:1]))  # fixes shapes before saving, as ScaNN requires
    _save(scann_module, run_dir / "retrieval_index")

    brute_force = tfrs.layers.factorized_top_k.BruteForce(k=k)
    brute_force.index(tf.constant(catalogue), identifiers=tf.constant(movie_ids))
    exact_module = _index_module(user_ids, movie_ids, model.user_tower, brute_force, dim)
    exact_module(tf.constant(user_ids[:1]))
    _save(exact_module, run_dir / "exact_index")

    ranking = _ranking_module(user_ids, movie_ids, model, dim)
    ranking(tf.constant(user_ids[:1]), tf.constant(movie_ids[:1]))
    _save(ranking, run_dir / "ranking_model")

    vocab_dir = run_dir / "vocab"
    vocab_dir.mkdir(exist_ok=True)
    counts = prepared.movie_frequencies[1:]
    genres = prepared.ratings.movie_genres[movie_rows]
    with open(vocab_dir / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["movie_id", "title", "genres", "num_train_ratings"])
        for movie_id, title, hot, count in zip(
            movie_ids, prepared.ratings.movie_titles[movie_rows], genres, counts, strict=True
        ):
            names = "|".join(GENRES[g] for g in np.flatnonzero(hot))
            writer.writerow([movie_id, str(title), names, int(count)])
    (vocab_dir / "users.txt").write_text("\n".join(user_ids) + "\n", encoding="utf-8")
    np.save(vocab_dir / "movie_vectors.npy", catalogue.astype(np.float32), allow_pickle=False)

    # Seen = every training-split rating (validation part included), by user vocabulary index.
    seen_user = prepared.user_vocab_of_row[prepared.train.user_index]
    seen_movie = prepared.movie_vocab_of_row[prepared.train.movie_index]
    keep = (seen_user > 0) & (seen_movie > 0)
    order = np.lexsort((seen_movie[keep], seen_user[keep]))
    indptr = np.concatenate(
        [[0], np.cumsum(np.bincount(seen_user[keep] - 1, minlength=prepared.num_users))]
    )
    seen_dir = run_dir / "seen"
    seen_dir.mkdir(exist_ok=True)
    np.save(seen_dir / "indptr.npy", indptr.astype(np.int64), allow_pickle=False)
    np.save(
        seen_dir / "movies.npy", (seen_movie[keep][order] - 1).astype(np.int32), allow_pickle=False
    )

    metrics["index"] = index_description
    metrics["export_seconds"] = round(time.perf_counter() - started, 2)
    log(f"exported indexes and ranking model in {metrics['export_seconds']:.1f}s")


def file_checksums(run_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``run_dir`` except the manifest, by relative path."""
    checksums = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
            checksums[path.relative_to(run_dir).as_posix()] = digest.hexdigest()
    return checksums


def write_manifest(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    protocol = metrics.get("protocol", {})
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": _versions(),
        "dataset": protocol.get("dataset"),
        "split": protocol.get("split"),
        "split_seed": protocol.get("split_seed"),
        "model_seed": json.loads((run_dir / "config.json").read_text())["train"]["seed"],
        "index": metrics.get("index"),
        "files": file_checksums(run_dir),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def finalize_run(partial: Path, run_dir: Path, metrics: dict[str, Any], overwrite: bool = False):
    """Writes metrics.json and manifest.json, then renames ``partial`` to ``run_dir``.

    The rename is the commit point: ``run_dir`` either does not exist or is complete.
    """
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    write_manifest(partial, metrics)
    if run_dir.exists() and overwrite:
        trash = run_dir.with_name(run_dir.name + f".old-{os.getpid()}")
        os.replace(run_dir, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(partial, run_dir)
