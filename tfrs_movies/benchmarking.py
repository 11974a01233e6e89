"""Benchmarks: training throughput, ScaNN index speed, scale behaviour and serving latency.

Shared helpers (timers, percentiles, peak RSS, plain-text tables) plus one function per benchmark
script in ``scripts/benchmark_*.py``. The scripts are thin: they parse arguments and call
:func:`run_training_benchmark`, :func:`run_index_benchmark`, :func:`run_scale_benchmark` /
:func:`scale_one_size` and :func:`run_serving_benchmark`.

The training benchmark also holds a faithful re-implementation of the TFRS multitask tutorial
(:func:`tutorial_model`, :func:`tutorial_datasets`) so that "ours vs. the tutorial" is measured
in one process on one machine.

TensorFlow is imported inside functions only; import :mod:`tfrs_movies` first (it sets
``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

Log = Callable[[str], None]
ML100K = "/work/shared/data/movielens/ml-100k"


def _print(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------- helpers
class Timer:
    """Accumulates wall-clock seconds over ``with timer:`` blocks.

    Attributes:
        seconds: total measured time.
        laps: the duration of each block, in order.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.laps: list[float] = []
        self._started: float | None = None

    def __enter__(self) -> Timer:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._started is not None
        lap = time.perf_counter() - self._started
        self.laps.append(lap)
        self.seconds += lap
        self._started = None


@contextmanager
def timed(store: dict[str, float], key: str) -> Iterator[None]:
    """Context manager writing the block's seconds into ``store``.

    ``store[key]`` receives wall-clock seconds and ``store[key + "_cpu"]`` this process's CPU
    seconds (user + system, all threads): on a machine shared with other work the CPU time is
    the steadier measure of cost, the wall time the one a user waits.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        store[key] = time.perf_counter() - started
        store[key + "_cpu"] = time.process_time() - cpu_started


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks.

    Same definition as ``numpy.percentile``'s default: for n sorted values the rank is
    ``q / 100 * (n - 1)``.

    Raises:
        ValueError: no values, or q outside [0, 100].
    """
    data = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if data.size == 0:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q}")
    rank = q / 100 * (data.size - 1)
    low = math.floor(rank)
    high = min(low + 1, data.size - 1)
    return float(data[low] + (data[high] - data[low]) * (rank - low))


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, mean and max of latencies, in milliseconds."""
    return {
        "p50_ms": percentile(seconds, 50) * 1e3,
        "p90_ms": percentile(seconds, 90) * 1e3,
        "p99_ms": percentile(seconds, 99) * 1e3,
        "mean_ms": float(np.mean(seconds)) * 1e3,
        "max_ms": float(np.max(seconds)) * 1e3,
    }


def peak_rss_bytes(children: bool = False) -> int:
    """Peak resident set size of this process (or of its waited-for children), in bytes.

    ``ru_maxrss`` is in kilobytes on Linux and in bytes on macOS.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return int(usage.ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def directory_bytes(path: str | Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def format_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, floats: str = "{:.4g}"
) -> str:
    """A right-aligned plain-text table; one row per dict, ``-`` for missing cells."""
    if not rows:
        return "(no rows)"
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, int | np.integer):
            return f"{int(value):,}"
        if isinstance(value, float | np.floating):
            value = float(value)
            return f"{value:,.0f}" if abs(value) >= 1000 else floats.format(value)
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def growth_factors(rows: list[dict[str, Any]], keys: Sequence[str], size_key: str = "ratings"):
    """Adds ``<key>_x`` = value / previous row's value for each key (in place); returns rows."""
    for previous, row in zip(rows, rows[1:], strict=False):
        row[f"{size_key}_x"] = row[size_key] / previous[size_key]
        for key in keys:
            if row.get(key) and previous.get(key):
                row[f"{key}_x"] = row[key] / previous[key]
    return rows


def _disable_op_determinism() -> bool:
    """Turns TensorFlow's op determinism off again (no public API); True if it could."""
    try:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
        return True
    except (ImportError, AttributeError):  # pragma: no cover - depends on the TF version
        return False


# --------------------------------------------------------------------------------- tutorial
def tutorial_datasets(ratings, seed: int = 42, train_fraction: float = 0.8):
    """The TFRS multitask tutorial's input pipeline over a :class:`Ratings` table.

    String-feature dicts (``user_id``, ``movie_title``, ``user_rating``) shuffled once with a
    seed, the first 80% for training; the movie dataset is every movie title.

    Returns:
        (train dataset of dicts, unbatched; movies dataset of titles; unique user ids; unique
        movie titles).
    """
    import tensorflow as tf

    examples = ratings.examples()
    features = {
        "user_id": examples["user_id"].astype(str),
        "movie_title": examples["movie_title"].astype(str),
        "user_rating": examples["user_rating"].astype(np.float32),
    }
    data = tf.data.Dataset.from_tensor_slices(features)
    shuffled = data.shuffle(len(features["user_id"]), seed=seed, reshuffle_each_iteration=False)
    train = shuffled.take(int(train_fraction * len(features["user_id"])))
    titles = np.unique(ratings.movie_titles.astype(str))
    movies = tf.data.Dataset.from_tensor_slices(titles)
    return train, movies, np.unique(features["user_id"]), titles


def tutorial_model(
    unique_user_ids: np.ndarray,
    unique_movie_titles: np.ndarray,
    movies,
    rating_weight: float = 1.0,
    retrieval_weight: float = 1.0,
    embedding_dim: int = 32,
    compute_metrics: bool = True,
):
    """The TFRS multitask tutorial's ``MovieModel`` (towers of StringLookup + Embedding).

    Args:
        unique_user_ids, unique_movie_titles: the lookup vocabularies.
        movies: dataset of movie titles, the FactorizedTopK candidates.
        rating_weight, retrieval_weight: loss weights.
        embedding_dim: tower output size (32 in the tutorial).
        compute_metrics: compute the tasks' metrics during training (the tutorial does; False
            passes ``compute_metrics=False`` to both tasks).

    Returns:
        An uncompiled ``tfrs.models.Model``.
    """
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    class MovielensModel(tfrs.models.Model):
        def __init__(self) -> None:
            super().__init__()
            self.movie_model = tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=unique_movie_titles, mask_token=None),
                    tf.keras.layers.Embedding(len(unique_movie_titles) + 1, embedding_dim),
                ]
            )
            self.user_model = tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=unique_user_ids, mask_token=None),
                    tf.keras.layers.Embedding(len(unique_user_ids) + 1, embedding_dim),
                ]
            )
            self.rating_model = tf.keras.Sequential(
                [
                    tf.keras.layers.Dense(256, activation="relu"),
                    tf.keras.layers.Dense(128, activation="relu"),
                    tf.keras.layers.Dense(1),
                ]
            )
            self.rating_task = tfrs.tasks.Ranking(
                loss=tf.keras.losses.MeanSquaredError(),
                metrics=[tf.keras.metrics.RootMeanSquaredError()],
            )
            self.retrieval_task = tfrs.tasks.Retrieval(
                metrics=tfrs.metrics.FactorizedTopK(
                    candidates=movies.batch(128).map(self.movie_model)
                )
            )
            self.rating_weight = rating_weight
            self.retrieval_weight = retrieval_weight

        def call(self, features):
            user_embeddings = self.user_model(features["user_id"])
            movie_embeddings = self.movie_model(features["movie_title"])
            return (
                user_embeddings,
                movie_embeddings,
                self.rating_model(tf.concat([user_embeddings, movie_embeddings], axis=1)),
            )

        def compute_loss(self, features, training=False):
            ratings = features.pop("user_rating")
            user_embeddings, movie_embeddings, rating_predictions = self(features)
            rating_loss = self.rating_task(
                labels=ratings, predictions=rating_predictions, compute_metrics=compute_metrics
            )
            retrieval_loss = self.retrieval_task(
                user_embeddings, movie_embeddings, compute_metrics=compute_metrics
            )
            return self.rating_weight * rating_loss + self.retrieval_weight * retrieval_loss

    return MovielensModel()


class _EpochTimes:
    """Builds a Keras callback recording each epoch's wall-clock seconds."""

    @staticmethod
    def callback(store: list[float]):
        import tensorflow as tf

        class EpochTimes(tf.keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                store.append(time.perf_counter() - self._started)

        return EpochTimes()


def run_tutorial(
    ratings, compute_metrics: bool, epochs: int = 3, batch_size: int = 8192, seed: int = 42
) -> dict[str, Any]:
    """Trains the tutorial model as the tutorial does and measures it.

    Returns:
        dict with ``examples_per_s`` (all epochs, first one with tracing included),
        ``steady_examples_per_s`` (epochs after the first), ``fit_seconds``, ``prep_seconds``,
        ``wall_seconds`` and ``epoch_seconds``.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    times: dict[str, float] = {}
    with timed(times, "prep"):
        train, movies, users, titles = tutorial_datasets(ratings, seed=seed)
        num_train = int(0.8 * ratings.num_ratings)
        cached_train = train.shuffle(100_000).batch(batch_size).cache()
        model = tutorial_model(users, titles, movies, compute_metrics=compute_metrics)
        model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    epoch_seconds: list[float] = []
    with timed(times, "fit"):
        model.fit(
            cached_train, epochs=epochs, verbose=0, callbacks=[_EpochTimes.callback(epoch_seconds)]
        )
    steady = sum(epoch_seconds[1:])
    return {
        "examples_per_s": num_train * epochs / times["fit"],
        "steady_examples_per_s": num_train * (epochs - 1) / steady if steady else None,
        "fit_seconds": times["fit"],
        "fit_cpu_seconds": times["fit_cpu"],
        "examples_per_cpu_s": num_train * epochs / times["fit_cpu"],
        "prep_seconds": times["prep"],
        "wall_seconds": times["fit"] + times["prep"],
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
    }


# --------------------------------------------------------------------------------- training
TUTORIAL_OVERRIDES = (
    "model.embedding_dim=32",
    "model.rating_hidden_units=256,128",
    # The tutorial's model size and optimizer; the retrieval loss is ours (exact softmax over the
    # catalogue). With in-batch negatives both implementations spend most of each step on the
    # same 8192 x 8192 logits and run at the same speed.
    "model.retrieval_negatives=catalogue",
    "model.use_genres=false",
    "model.use_year=false",
    "model.use_title=false",
    "model.use_timestamp=false",
    "model.use_demographics=false",
    # The tutorial has neither dropout nor L2 nor a softmax temperature.
    "model.rating_dropout=0",
    "model.embedding_l2=0",
    "model.temperature=1",
    "train.batch_size=8192",
    "train.optimizer=adagrad",
    "train.learning_rate=0.1",
    "train.epochs=3",
    "train.retrieval_weight=1",
    "train.rating_weight=1",
    "train.early_stopping_patience=0",
    "train.tensorboard=false",
    "data.validation_fraction=0",
    "data.test_fraction=0.2",
    "data.split=random",
)
PRESETS: dict[str, tuple[str, ...]] = {"tutorial": TUTORIAL_OVERRIDES, "default": ()}


def run_ours(config, ratings=None, deterministic: bool = True, log: Log = _print) -> dict[str, Any]:
    """Prepares data, builds and fits our model as ``train_and_evaluate`` does (no export/eval).

    Args:
        config: the resolved config.
        ratings: the dataset, or None to load ``config.data.source``.
        deterministic: call ``training.seed_everything`` (op determinism on, as real runs do);
            False seeds without op determinism.

    Returns:
        dict with ``examples_per_s`` (fit epochs only, tracing included),
        ``steady_examples_per_s`` (epochs after the first), ``prep_seconds`` (load + split +
        vocabularies), ``build_seconds``, ``fit_seconds``, ``wall_seconds`` and per-epoch data.
    """
    import tensorflow as tf

    from tfrs_movies import training

    times: dict[str, float] = {}
    with timed(times, "prep"):
        prepared = training.prepare_data(config, ratings=ratings, log=lambda _: None)
    with timed(times, "build"):
        if deterministic:
            training.seed_everything(config.train.seed)
        else:
            _disable_op_determinism()
            tf.keras.utils.set_random_seed(config.train.seed)
        model = training.build_model(prepared, config)
        model.compile(optimizer=training.make_optimizer(config))
    with timed(times, "fit"):
        fit = training.fit_model(model, prepared, config, log=log)
    epoch_seconds = [h["seconds"] for h in fit.history]
    steady = sum(epoch_seconds[1:])
    n = prepared.fit.num_ratings
    return {
        "examples_per_s": fit.examples_per_second,
        "steady_examples_per_s": n * (len(epoch_seconds) - 1) / steady if steady else None,
        "prep_seconds": times["prep"],
        "build_seconds": times["build"],
        "fit_seconds": times["fit"],
        "fit_cpu_seconds": times["fit_cpu"],
        "examples_per_cpu_s": n * len(epoch_seconds) / times["fit_cpu"],
        "wall_seconds": times["prep"] + times["build"] + times["fit"],
        "epoch_seconds": epoch_seconds,
        "epochs": len(epoch_seconds),
        "fit_examples": n,
        "negatives": model.negatives,
    }


def load_benchmark_config(
    preset: str, data: str | None, epochs: int | None, overrides: Sequence[str] = ()
):
    """The config of a preset, with ``--data``/``--epochs`` and extra overrides applied."""
    from tfrs_movies.config import load_config

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    items = list(PRESETS[preset]) + list(overrides)
    items.append(f"data.source={data or ML100K}")
    if epochs is not None:
        items.append(f"train.epochs={epochs}")
    return load_config(None, items)


def run_training_benchmark(
    preset: str = "tutorial",
    data: str | None = None,
    epochs: int | None = None,
    overrides: Sequence[str] = (),
    compare_tutorial: bool | None = None,
    nondeterministic_too: bool = True,
    log: Log = _print,
) -> dict[str, Any]:
    """Measures our model under a preset and (for ml-100k) the tutorial in the same process.

    The tutorial runs first (op determinism off), then ours without and with op determinism
    (``train_and_evaluate`` turns it on; the difference is reported separately).

    Returns:
        {"rows": table rows, "ours": the deterministic run of ours, "ratio": ours / tutorial}.
    """
    from tfrs_movies.data import load_source

    config = load_benchmark_config(preset, data, epochs, overrides)
    log(
        f"preset {preset}: data {config.data.source}; batch {config.train.batch_size}, "
        f"epochs {config.train.epochs}, negatives {config.model.retrieval_negatives}, "
        f"validation {config.data.validation_fraction}"
    )
    started = time.perf_counter()
    ratings = load_source(config.data.source)
    load_seconds = time.perf_counter() - started
    if compare_tutorial is None:
        compare_tutorial = preset == "tutorial"
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}

    def row(name: str, r: dict[str, Any]) -> None:
        rows.append(
            {
                "model": name,
                "ex/s (all epochs)": r["examples_per_s"],
                "ex/s (epochs 2+)": r["steady_examples_per_s"],
                "fit s": r["fit_seconds"],
                "fit CPU s": r["fit_cpu_seconds"],
                "ex/CPU-s": r["examples_per_cpu_s"],
                "wall s (incl. prep)": r["wall_seconds"] + load_seconds,
                "epoch s": " ".join(f"{s:.2f}" for s in r["epoch_seconds"]),
            }
        )

    if compare_tutorial:
        for metrics in (False, True):
            name = f"tutorial ({'with' if metrics else 'without'} metrics)"
            log(f"running {name} ...")
            results[name] = run_tutorial(
                ratings,
                compute_metrics=metrics,
                epochs=config.train.epochs,
                batch_size=config.train.batch_size,
            )
            row(name, results[name])
    if nondeterministic_too:
        log("running ours without op determinism ...")
        results["ours (no op determinism)"] = run_ours(
            config, ratings, deterministic=False, log=log
        )
        row("ours (no op determinism)", results["ours (no op determinism)"])
    log("running ours as train_and_evaluate does (op determinism on) ...")
    ours = run_ours(config, ratings, deterministic=True, log=log)
    results["ours"] = ours
    row("ours", ours)
    ratio = None
    if compare_tutorial:
        ratio = {
            "all_epochs_vs_no_metrics": ours["examples_per_s"]
            / results["tutorial (without metrics)"]["examples_per_s"],
            "all_epochs_vs_with_metrics": ours["examples_per_s"]
            / results["tutorial (with metrics)"]["examples_per_s"],
            "cpu_vs_no_metrics": ours["examples_per_cpu_s"]
            / results["tutorial (without metrics)"]["examples_per_cpu_s"],
            "cpu_vs_with_metrics": ours["examples_per_cpu_s"]
            / results["tutorial (with metrics)"]["examples_per_cpu_s"],
        }
    return {
        "rows": rows,
        "results": results,
        "ours": ours,
        "ratio": ratio,
        "load_seconds": load_seconds,
        "config": config,
    }


# --------------------------------------------------------------------------------- index
def clustered_vectors(
    n: int, dim: int, seed: int, num_clusters: int = 256, spread: float = 0.35, chunk: int = 1 << 18
) -> np.ndarray:
    """(n, dim) float32 vectors from a Gaussian mixture, like trained embeddings.

    Cluster centres are standard normal; members add isotropic noise of std ``spread``; the last
    column mimics the retrieval bias column (small, centred). The same centres for the same seed,
    so queries drawn with another seed share them via :func:`clustered_queries`.
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


def exact_top_k_chunked(
    queries: np.ndarray, candidates: np.ndarray, k: int, chunk: int = 64
) -> np.ndarray:
    """:func:`tfrs_movies.export.exact_top_k` over query chunks (bounded memory)."""
    from tfrs_movies.export import exact_top_k

    return np.concatenate(
        [exact_top_k(queries[s : s + chunk], candidates, k) for s in range(0, len(queries), chunk)]
    )


class _QueryTower:
    """Builds a stand-in user tower for :func:`export._index_module` (index -> zero vector)."""

    @staticmethod
    def make(dim: int):
        import tensorflow as tf

        return tf.keras.layers.Embedding(2, dim, embeddings_initializer="zeros")


def _saved_index(layer, dim: int, n: int, path: Path):
    """Saves an index layer over ``n`` candidates the way ``export_run`` does; loads it back."""
    import tensorflow as tf

    from tfrs_movies import export

    module = export._index_module(
        np.array(["u0"]), np.arange(n).astype(str), _QueryTower.make(dim), layer, dim
    )
    module(tf.constant(["u0"]))  # fixes shapes before saving, as ScaNN requires
    started = time.perf_counter()
    export._save(module, path)
    save_seconds = time.perf_counter() - started
    return tf.saved_model.load(str(path)), save_seconds


def _time_single(search, queries: np.ndarray, warmup: int = 20) -> dict[str, float]:
    import tensorflow as tf

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
    search, queries: np.ndarray, batch: int, min_seconds: float = 2.0, max_rounds: int = 20
) -> float:
    """Queries per second through ``search`` in batches of ``batch`` (after one warm-up)."""
    import tensorflow as tf

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
    log: Log = _print,
) -> dict[str, Any]:
    """Builds, saves, reloads and measures a ScaNN index and its brute-force twin over N vectors.

    Returns:
        One table row: parameters, recall@10 vs exact, single-query latency percentiles, batched
        queries/s for both, build time and size on disk.
    """
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from tfrs_movies import export
    from tfrs_movies.config import IndexConfig

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
    loaded, save_seconds = _saved_index(layer, dim, n, scann_dir)
    del layer
    exact = exact_top_k_chunked(evaluation, candidates, 10)
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
    brute_loaded, _ = _saved_index(brute, dim, n, brute_dir)
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
    log: Log = _print,
):
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


# --------------------------------------------------------------------------------- scale
# (ratings, users, movies) of real MovieLens releases; synthetic sizes interpolate log-log.
MOVIELENS_SHAPES = (
    (100_000, 943, 1_682),
    (1_000_209, 6_040, 3_706),
    (10_000_054, 69_878, 10_677),
    (20_000_263, 138_493, 26_744),
    (25_000_095, 162_541, 62_423),
)


def movielens_shape(num_ratings: int) -> tuple[int, int]:
    """(users, movies) of a MovieLens-like dataset of ``num_ratings`` ratings (log-log interp)."""
    sizes = np.log([s[0] for s in MOVIELENS_SHAPES])
    x = math.log(num_ratings)
    users = math.exp(float(np.interp(x, sizes, np.log([s[1] for s in MOVIELENS_SHAPES]))))
    movies = math.exp(float(np.interp(x, sizes, np.log([s[2] for s in MOVIELENS_SHAPES]))))
    if x > sizes[-1] or x < sizes[0]:  # extrapolate with the end segments' slopes
        i = -2 if x > sizes[-1] else 0
        for j, name in ((1, "users"), (2, "movies")):
            y0, y1 = math.log(MOVIELENS_SHAPES[i][j]), math.log(MOVIELENS_SHAPES[i + 1][j])
            value = math.exp(y0 + (y1 - y0) / (sizes[i + 1] - sizes[i]) * (x - sizes[i]))
            users, movies = (value, movies) if name == "users" else (users, value)
    return max(10, round(users)), max(10, round(movies))


SCALE_OVERRIDES = (
    "model.retrieval_negatives=auto",
    "data.validation_fraction=0",
    "train.early_stopping_patience=0",
    "train.epochs=1",
    "train.tensorboard=false",
)


def _timed_partial_epoch(
    model, prepared, config, steps: int, warmup_steps: int = 20
) -> dict[str, Any]:
    """Times ``steps`` training steps the way ``fit_model`` feeds them; projects a whole epoch.

    The pipeline is the one ``fit_model`` builds (``epoch_order`` permutation of every input
    column, then ``make_dataset``), so its memory is paid in full; only the number of steps is
    cut. The first ``warmup_steps`` (tracing included) are timed apart.
    """
    from tfrs_movies import training

    t = config.train
    started = time.perf_counter()
    inputs = prepared.model_inputs(prepared.fit)
    order = training.epoch_order(prepared.fit.num_ratings, t.seed, 0)
    dataset = training.make_dataset(inputs, t.batch_size, order)
    pipeline_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(dataset.take(warmup_steps), epochs=1, verbose=0)
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(dataset.skip(warmup_steps).take(steps), epochs=1, verbose=0)
    step_seconds = (time.perf_counter() - started) / steps
    total_steps = math.ceil(prepared.fit.num_ratings / t.batch_size)
    projected = pipeline_seconds + warmup_seconds + step_seconds * (total_steps - warmup_steps)
    return {
        "epoch s": projected,
        "ex/s": prepared.fit.num_ratings / projected,
        "epoch": f"projected from {steps} of {total_steps:,} steps",
    }


def scale_one_size(
    num_ratings: int,
    train: bool = True,
    seed: int = 0,
    max_epoch_steps: int | None = None,
    overrides: Sequence[str] = (),
    log: Log = _print,
) -> dict[str, Any]:
    """Data preparation, one training epoch and peak RSS at one size (run in a fresh process).

    Args:
        num_ratings: dataset size; users and movies follow :func:`movielens_shape`.
        train: also train one epoch.
        seed: synthetic data seed.
        max_epoch_steps: when the epoch has more steps than this, time this many steps (after
            a warm-up) and project the whole epoch from them (marked in the ``epoch`` column).
        overrides: extra ``section.key=value`` config overrides (for what-if rows).

    Returns:
        One table row.
    """
    from tfrs_movies import training
    from tfrs_movies.config import load_config
    from tfrs_movies.data import load_source

    users, movies = movielens_shape(num_ratings)
    source = f"synthetic:users={users},movies={movies},ratings={num_ratings},seed={seed}"
    config = load_config(None, [*SCALE_OVERRIDES, f"data.source={source}", *overrides])
    times: dict[str, float] = {}
    with timed(times, "load"):
        ratings = load_source(source)
    with timed(times, "prepare"):
        prepared = training.prepare_data(config, ratings=ratings, log=log)
    rss_after_prep = peak_rss_bytes()
    row: dict[str, Any] = {
        "ratings": num_ratings,
        "users": users,
        "movies": movies,
        "load s": times["load"],
        "prepare s": times["prepare"],
        "prep s": times["load"] + times["prepare"],
        "prep RSS GiB": rss_after_prep / 2**30,
    }
    if train:
        training.seed_everything(config.train.seed)
        model = training.build_model(prepared, config)
        model.compile(optimizer=training.make_optimizer(config))
        row["negatives"] = model.negatives
        total_steps = math.ceil(prepared.fit.num_ratings / config.train.batch_size)
        if max_epoch_steps is not None and total_steps > max_epoch_steps + 20:
            row.update(_timed_partial_epoch(model, prepared, config, max_epoch_steps))
        else:
            with timed(times, "epoch"):
                fit = training.fit_model(model, prepared, config, log=log)
            row["epoch s"] = times["epoch"]
            row["ex/s"] = fit.examples_per_second
            row["epoch"] = "measured"
    row["peak RSS GiB"] = peak_rss_bytes() / 2**30
    return row


def run_scale_subprocess(
    script: Path,
    num_ratings: int,
    train: bool,
    max_epoch_steps: int | None = None,
    overrides: Sequence[str] = (),
    log: Log = _print,
) -> dict[str, Any]:
    """Runs ``script --one-size N`` in a fresh interpreter and parses its JSON last line."""
    command = [sys.executable, str(script), "--one-size", str(num_ratings), *overrides]
    if not train:
        command.append("--no-train")
    if max_epoch_steps is not None:
        command += ["--max-epoch-steps", str(max_epoch_steps)]
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    if process.returncode != 0:
        log(process.stderr[-3000:])
        raise RuntimeError(f"size {num_ratings:,} failed with exit code {process.returncode}")
    row = json.loads(process.stdout.strip().splitlines()[-1])
    row["process s"] = time.perf_counter() - started
    if overrides:
        row["overrides"] = " ".join(overrides)
    return row


def extrapolate_scale(rows: list[dict[str, Any]], target: int) -> dict[str, Any]:
    """Power-law extrapolation of prep time, epoch time and peak RSS from the last two rows."""
    a, b = rows[-2], rows[-1]
    out: dict[str, Any] = {
        "ratings": target,
        "users": movielens_shape(target)[0],
        "movies": movielens_shape(target)[1],
        "note": "EXTRAPOLATED",
    }
    for key in ("prep s", "epoch s", "peak RSS GiB"):
        if a.get(key) and b.get(key):
            exponent = math.log(b[key] / a[key]) / math.log(b["ratings"] / a["ratings"])
            out[key] = b[key] * (target / b["ratings"]) ** exponent
            out[f"{key} exponent"] = exponent
    return out


# --------------------------------------------------------------------------------- serving
def exact_numpy_recommender_class():
    """A Recommender that retrieves by exact numpy scoring instead of the ScaNN index.

    One ``query_vectors`` call for the batch, ``queries @ movie_vectors.T``, seen movies set to
    -inf through a CSR scatter, ``argpartition`` for the top ``num_candidates``: no string ids
    on the retrieval side at all. For catalogues of a few tens of thousands of movies this is
    exact and cheaper than ScaNN's answer of ``index.k`` string ids per user (the index stays
    the path for large catalogues). ``min_ratings`` is applied as a -inf mask too.

    Returns:
        The subclass.
    """
    from tfrs_movies.recommender import Recommender

    class ExactNumpyRecommender(Recommender):
        def recommend(
            self,
            user_ids,
            k: int = 10,
            num_candidates: int = 100,
            exclude_seen: bool = True,
            min_ratings: int = 0,
            rerank_weight: float | None = None,
        ):
            import tensorflow as tf

            single = isinstance(user_ids, str | int | np.integer)
            users = [str(user_ids)] if single else [str(u) for u in user_ids]
            self._check_k(k)
            self._check_k(num_candidates, "num_candidates")
            rows = np.fromiter((self._user_row[u] for u in users), np.int64, len(users))
            queries = self.retrieval_index.query_vectors(tf.constant(users)).numpy()
            scores = queries @ self.movie_vectors.T
            if exclude_seen:
                starts, stops = self.seen_indptr[rows], self.seen_indptr[rows + 1]
                lengths = stops - starts
                which = np.repeat(np.arange(len(rows)), lengths)
                offsets = np.arange(lengths.sum()) - np.repeat(
                    np.cumsum(lengths) - lengths, lengths
                )
                scores[which, self.seen_movies[np.repeat(starts, lengths) + offsets]] = -np.inf
            if min_ratings > 0:
                scores[:, self.num_ratings < min_ratings] = -np.inf
            wanted = min(max(k, num_candidates), scores.shape[1])
            top = np.argpartition(-scores, wanted - 1, axis=1)[:, :wanted]
            top_scores = np.take_along_axis(scores, top, 1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top, top_scores = (
                np.take_along_axis(top, order, 1),
                np.take_along_axis(top_scores, order, 1),
            )
            finite = np.isfinite(top_scores)
            candidate_rows = [t[f] for t, f in zip(top, finite, strict=True)]
            candidate_scores = [t[f] for t, f in zip(top_scores, finite, strict=True)]
            return self._finish(
                candidate_rows,
                candidate_scores,
                k,
                rerank_weight,
                single,
                lambda candidates: self._score_known(rows, candidates),
            )

    return ExactNumpyRecommender


def _measure_recommender(
    recommender,
    users: np.ndarray,
    requests: int,
    batch: int,
    batch_rounds: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    singles = rng.choice(users, requests)
    for user in singles[:20]:
        recommender.recommend(user)
    latencies = []
    for user in singles:
        started = time.perf_counter()
        recommender.recommend(user)
        latencies.append(time.perf_counter() - started)
    batches = [rng.choice(users, batch) for _ in range(batch_rounds)]
    recommender.recommend(batches[0])
    started = time.perf_counter()
    for users_batch in batches:
        recommender.recommend(users_batch)
    seconds = time.perf_counter() - started
    return {**latency_summary(latencies), f"users/s (b={batch})": batch * batch_rounds / seconds}


def _median_ms(call: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median wall time of ``call`` in milliseconds over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        call()
    laps = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        laps.append(time.perf_counter() - started)
    return percentile(laps, 50) * 1e3


def profile_call(function: Callable[[], Any], top: int = 18) -> str:
    """cProfile of one call: the ``top`` functions by cumulative and by own time."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    function()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def run_serving_benchmark(
    run_dir: str | Path,
    requests: int = 500,
    batch: int = 1000,
    batch_rounds: int = 5,
    seed: int = 0,
    profile: bool = True,
    log: Log = _print,
) -> dict[str, Any]:
    """Single-user latency and batched throughput of ``recommend()``, beside exact retrieval.

    ``Recommender`` (ScaNN candidates) and the exact-numpy variant are loaded from the same run
    directory and measured in the same process; the overlap of their answers is reported.

    Returns:
        {"rows": table rows, "profiles": {name: cProfile text}, "stages": per-stage timings}.
    """
    import tensorflow as tf

    from tfrs_movies.recommender import Recommender

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    baseline = Recommender.load(run_dir)
    load_seconds = time.perf_counter() - started
    exact = exact_numpy_recommender_class().load(run_dir)
    users = baseline.user_ids
    check = rng.choice(users, 300)
    reference = baseline.recommend(check)
    exact_overlap = float(
        np.mean(
            [
                len({r.movie_id for r in a} & {r.movie_id for r in b}) / max(1, len(a))
                for a, b in zip(reference, exact.recommend(check), strict=True)
            ]
        )
    )
    rows = []
    for name, recommender in (
        ("Recommender (ScaNN)", baseline),
        ("exact numpy retrieval", exact),
    ):
        log(f"measuring {name} ...")
        row = {
            "recommender": name,
            **_measure_recommender(
                recommender, users, requests, batch, batch_rounds, np.random.default_rng(seed)
            ),
        }
        rows.append(row)

    # Where a single request's time goes: the two SavedModel calls vs. the Python around them.
    one = tf.constant([users[0]])
    ids = baseline.retrieval_index(one)[1].numpy()
    candidates = tf.constant(baseline.movie_ids[:100].astype(str)[None, :])
    stage_calls = {
        "retrieval_index(1 user)": lambda: baseline.retrieval_index(one),
        "ranking score_candidates(1x100)": lambda: baseline.ranking_model.score_candidates(
            one, candidates
        ),
        f"ids.astype(str) + dict lookups (1x{ids.shape[1]})": lambda: [
            baseline._movie_row[m] for m in ids[0].astype(str)
        ],
        "recommend(1 user) total (ScaNN)": lambda: baseline.recommend(users[0]),
        "recommend(1 user) total (exact numpy)": lambda: exact.recommend(users[0]),
    }
    stages = {name: _median_ms(call, 20, 300) for name, call in stage_calls.items()}
    big = rng.choice(users, batch)
    big_tensor = tf.constant(big.astype(str))
    scores, big_rows = baseline.retrieval_index.rows(big_tensor)
    big_candidates = tf.constant(
        baseline.movie_ids[rng.integers(0, len(baseline.movie_ids), (batch, 100))].astype(str)
    )

    def query_vector(i: int) -> np.ndarray:
        return baseline.retrieval_index.query_vectors(tf.constant([big[i]])).numpy()[0]

    fallbacks = 0
    for i, user in enumerate(big):
        seen = baseline.seen_rows(baseline._user_row[user])
        retrieved = big_rows.numpy()[i]
        fallbacks += int((~np.isin(retrieved, seen)).sum() < 100)
    stages[f"(users of the {batch} needing the exact fallback: {fallbacks})"] = 0.0
    batch_calls = {
        f"retrieval_index.rows({batch} users)": lambda: baseline.retrieval_index.rows(big_tensor),
        f"ranking score_candidates({batch}x100)": lambda: baseline.ranking_model.score_candidates(
            big_tensor, big_candidates
        ),
        f"_filter ({batch} users)": lambda: baseline._filter(
            [baseline.seen_rows(baseline._user_row[u]) for u in big],
            big_rows.numpy(),
            scores.numpy(),
            100,
            0,
            query_vector,
        ),
        f"recommend({batch} users) ScaNN": lambda: baseline.recommend(big),
        f"recommend({batch} users) exact numpy": lambda: exact.recommend(big),
    }
    stages.update({name: _median_ms(call, 1, 3) for name, call in batch_calls.items()})
    profiles = {}
    if profile:
        profiles[f"current recommend({batch} users)"] = profile_call(
            lambda: baseline.recommend(big)
        )
        profiles["current recommend(1 user) x200"] = profile_call(
            lambda: [baseline.recommend(u) for u in big[:200]]
        )
    return {
        "rows": rows,
        "stages": stages,
        "profiles": profiles,
        "exact_overlap": exact_overlap,
        "load_seconds": load_seconds,
        "num_users": len(users),
        "num_movies": len(baseline.movie_ids),
    }


@dataclasses.dataclass(frozen=True)
class Target:
    """A benchmark target: ``value`` compared with ``limit`` (``at_least`` or at most)."""

    name: str
    value: float
    limit: float
    at_least: bool

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        return (
            f"{'MET ' if self.met else 'MISS'}  {self.name}: {self.value:,.4g} "
            f"(target {sign} {self.limit:,.4g})"
        )
