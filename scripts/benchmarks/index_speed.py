"""The index benchmark: the exported kind of ScaNN index against brute force, over N vectors.

Each index is saved and loaded back the way ``export_run`` saves a run's ``retrieval_index/``
(same module, same signatures), so what is timed is the SavedModel a caller loads.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1; must load before TensorFlow)

# isort: split
import scann  # noqa: F401  (registers the ScaNN ops that tf.saved_model.load needs)
import tensorflow as tf
import tensorflow_recommenders as tfrs
from common import directory_bytes, format_table, latency_summary

from tfrs_movies import export
from tfrs_movies.config import IndexConfig
from tfrs_movies.data.vocab import Vocabulary
from tfrs_movies.fold_in_graph import FoldInGraph
from tfrs_movies.log import Log, print_line


def clustered_vectors(
    n: int, dim: int, seed: int, num_clusters: int = 256, spread: float = 0.35, chunk: int = 1 << 18
) -> np.ndarray:
    """(n, dim) float32 vectors from a Gaussian mixture, like trained embeddings.

    Cluster centres are standard normal and the same for every seed (so queries drawn with
    another seed share them); members add isotropic noise of std ``spread``; the last column
    mimics the retrieval bias column (small, centred).

    Args:
        n: number of vectors.
        dim: vector size.
        seed: seeds the members and noise.
        num_clusters: mixture components.
        spread: noise std around a centre.
        chunk: vectors drawn at a time (bounds the temporary memory).
    """
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((num_clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        members = rng.integers(0, num_clusters, stop - start)
        out[start:stop] = centres[members] + spread * rng.standard_normal(
            (stop - start, dim), dtype=np.float32
        )
    out[:, -1] = 0.1 * rng.standard_normal(n, dtype=np.float32)
    return out


def random_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32 i.i.d. standard normal vectors (the hard, structureless case)."""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def _saved_index(layer: tf.keras.layers.Layer, candidates: np.ndarray, path: Path):
    """Saves an index layer over (n, dim) ``candidates`` the way ``export_run`` does; loads it
    back.

    The user tower is a stand-in (one user, a zero vector), and so is the new-person fold-in
    (temperature 1, equal popularity; its vectors are part of the size on disk): only
    ``search`` (query vectors in) is timed.

    Returns:
        (the loaded SavedModel, seconds :func:`~tfrs_movies.export.save_index` took, its
        warm-up call that fixes ScaNN's shapes included).
    """
    n, dim = candidates.shape
    user_tower = tf.keras.layers.Embedding(2, dim, embeddings_initializer="zeros")
    users = Vocabulary.from_ids(np.array(["u0"]))
    movies = Vocabulary.from_ids(np.arange(n).astype(str))
    fold_in = FoldInGraph(np.vstack([np.zeros((1, dim), np.float32), candidates]), 1.0)
    started = time.perf_counter()
    export.save_index(layer, user_tower, users, movies, dim, path, fold_in, np.ones(n))
    save_seconds = time.perf_counter() - started
    return tf.saved_model.load(str(path)), save_seconds


def _time_single(search: Callable, queries: np.ndarray, warmup: int = 20) -> dict[str, float]:
    """Latency percentiles of one query at a time (after ``warmup`` untimed queries)."""
    tensors = [tf.constant(q[None, :]) for q in queries]
    for t in tensors[:warmup]:
        search(t)
    latencies = []
    for t in tensors:
        started = time.perf_counter()
        search(t)[1].numpy()
        latencies.append(time.perf_counter() - started)
    return latency_summary(latencies)


def _time_batched(
    search: Callable,
    queries: np.ndarray,
    batch: int,
    min_seconds: float = 2.0,
    max_rounds: int = 20,
) -> float:
    """Queries per second through ``search`` in batches of ``batch`` (after one warm-up)."""
    batches = [tf.constant(queries[s : s + batch]) for s in range(0, len(queries), batch)]
    search(batches[0])[1].numpy()
    done, started, rounds = 0, time.perf_counter(), 0
    while rounds < max_rounds:
        for b in batches:
            search(b)[1].numpy()
            done += int(b.shape[0])
        rounds += 1
        if time.perf_counter() - started >= min_seconds:
            break
    return done / (time.perf_counter() - started)


def index_benchmark_one(
    n: int,
    dim: int,
    num_queries: int,
    distribution: str,
    k: int,
    target_recall: float,
    tune_queries: int,
    workdir: Path,
    seed: int = 0,
    log: Log = print_line,
) -> dict[str, Any]:
    """Builds, saves, reloads and measures a ScaNN index and its brute-force twin over N vectors.

    Args:
        n: number of candidate vectors.
        dim: vector size (embedding + bias column).
        num_queries: held-out queries for recall and timing.
        distribution: ``"clustered"`` or ``"random"``.
        k: results per query.
        target_recall: recall@10 the ScaNN tuner aims for.
        tune_queries: queries the tuner measures on.
        workdir: where the SavedModels go (removed afterwards).
        seed: data seed.
        log: receives progress lines.

    Returns:
        One table row: parameters, recall@10 vs exact, single-query latency percentiles, batched
        queries/s for both, build time and size on disk.
    """
    make = clustered_vectors if distribution == "clustered" else random_vectors
    candidates = make(n, dim, seed)
    queries = make(num_queries + tune_queries, dim, seed + 1)
    if distribution == "clustered":
        queries[:, -1] = 1.0  # the user tower's constant bias coordinate
    tune_sample, evaluation = queries[:tune_queries], queries[tune_queries:]
    log(f"[{distribution} N={n:,}] tuning ScaNN on {tune_queries} queries ...")
    started = time.perf_counter()
    _, description = export.tune_scann(
        candidates, tune_sample, k, IndexConfig(target_recall=target_recall), log=log
    )
    tune_seconds = time.perf_counter() - started
    identifiers = np.arange(n).astype(str)
    started = time.perf_counter()
    layer = export.build_scann(
        candidates,
        identifiers,
        k,
        description["num_leaves"],
        description["num_leaves_to_search"],
        description["num_reordering_candidates"],
    )
    build_seconds = time.perf_counter() - started
    scann_dir = workdir / f"scann_{distribution}_{n}"
    loaded, save_seconds = _saved_index(layer, candidates, scann_dir)
    del layer
    exact = export.exact_top_k(evaluation, candidates, 10, chunk=64)
    approximate = np.concatenate(
        [
            loaded.search(tf.constant(evaluation[s : s + 1000]))[1].numpy().astype(int)
            for s in range(0, len(evaluation), 1000)
        ]
    )
    recall = export.recall_against_exact(approximate, exact, 10)
    log(
        f"[{distribution} N={n:,}] recall@10 {recall:.4f} on {len(evaluation)} held-out queries; "
        "timing ..."
    )
    single = _time_single(loaded.search, evaluation)
    scann_qps = _time_batched(loaded.search, evaluation, 1000)
    size = directory_bytes(scann_dir)
    del loaded

    brute = tfrs.layers.factorized_top_k.BruteForce(k=k)
    brute.index(tf.constant(candidates), identifiers=tf.constant(identifiers))
    brute_dir = workdir / f"brute_{distribution}_{n}"
    brute_loaded, _ = _saved_index(brute, candidates, brute_dir)
    del brute
    brute_single = _time_single(brute_loaded.search, evaluation[:200], warmup=5)
    brute_qps = _time_batched(brute_loaded.search, evaluation, 1000, min_seconds=1.0, max_rounds=1)
    brute_size = directory_bytes(brute_dir)
    del brute_loaded
    shutil.rmtree(scann_dir, ignore_errors=True)
    shutil.rmtree(brute_dir, ignore_errors=True)
    return {
        "vectors": distribution,
        "N": n,
        "leaves": description["num_leaves"],
        "searched": description["num_leaves_to_search"],
        "reorder": description["num_reordering_candidates"],
        "k": k,
        "recall@10": recall,
        "tune s": tune_seconds,
        "build s": build_seconds,
        "save s": save_seconds,
        "scann p50 ms": single["p50_ms"],
        "scann p99 ms": single["p99_ms"],
        "brute p50 ms": brute_single["p50_ms"],
        "brute p99 ms": brute_single["p99_ms"],
        "scann q/s (b=1000)": scann_qps,
        "brute q/s (b=1000)": brute_qps,
        "speedup": scann_qps / brute_qps,
        "scann MB": size / 2**20,
        "brute MB": brute_size / 2**20,
    }


def run_index_benchmark(
    sizes: Sequence[int],
    dim: int = 33,
    num_queries: int = 1000,
    k: int = 100,
    target_recall: float = 0.95,
    tune_queries: int = 256,
    random_at: Sequence[int] = (1_000_000,),
    log: Log = print_line,
) -> list[dict[str, Any]]:
    """:func:`index_benchmark_one` for each size (clustered) plus the random case at ``random_at``.

    Returns:
        The table rows.
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfrs_movies_index_bench_") as tmp:
        cases = [(n, "clustered") for n in sizes]
        cases += [(n, "random") for n in random_at if n in sizes]
        for n, distribution in cases:
            rows.append(
                index_benchmark_one(
                    n,
                    dim,
                    num_queries,
                    distribution,
                    k,
                    target_recall,
                    tune_queries,
                    Path(tmp),
                    log=log,
                )
            )
            log(format_table(rows[-1:]))
    return rows
