"""Fast tests of the benchmark helpers (the benchmarks themselves are scripts)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tfrs_movies import benchmarking


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy(q):
    values = np.random.default_rng(0).exponential(size=101)
    assert benchmarking.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_small_cases():
    assert benchmarking.percentile([3.0], 99) == 3.0
    assert benchmarking.percentile([1.0, 2.0], 50) == 1.5
    assert benchmarking.percentile([4, 1, 3, 2], 100) == 4
    with pytest.raises(ValueError):
        benchmarking.percentile([], 50)
    with pytest.raises(ValueError):
        benchmarking.percentile([1.0], 101)


def test_latency_summary_in_milliseconds():
    summary = benchmarking.latency_summary([0.001] * 98 + [0.010, 0.020])
    assert summary["p50_ms"] == pytest.approx(1.0)
    assert summary["max_ms"] == pytest.approx(20.0)
    assert summary["p99_ms"] > summary["p90_ms"]


def test_timer_and_timed_accumulate():
    timer = benchmarking.Timer()
    for _ in range(2):
        with timer:
            time.sleep(0.01)
    assert len(timer.laps) == 2 and timer.seconds >= 0.02
    store: dict[str, float] = {}
    with benchmarking.timed(store, "x"):
        sum(range(10_000))
    assert store["x"] >= 0 and store["x_cpu"] >= 0


def test_peak_rss_grows_with_allocation():
    before = benchmarking.peak_rss_bytes()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB touched
    assert block.sum() > 0
    assert benchmarking.peak_rss_bytes() >= max(before, 64 * 2**20)


def test_format_table_and_growth_factors():
    rows = benchmarking.growth_factors(
        [{"ratings": 100, "prep s": 1.0}, {"ratings": 1000, "prep s": 5.0, "note": "x"}],
        ["prep s"],
    )
    assert rows[1]["ratings_x"] == 10 and rows[1]["prep s_x"] == 5
    text = benchmarking.format_table(rows, ["ratings", "prep s", "note"])
    lines = text.splitlines()
    assert lines[0].split() == ["ratings", "prep", "s", "note"]
    assert lines[2].split() == ["100", "1", "-"] and lines[3].split() == ["1,000", "5", "x"]


def test_movielens_shape_hits_the_real_releases():
    assert benchmarking.movielens_shape(100_000) == (943, 1682)
    assert benchmarking.movielens_shape(25_000_095) == (162_541, 62_423)
    users, movies = benchmarking.movielens_shape(3_000_000)
    assert 6_040 < users < 69_878 and 3_706 < movies < 10_677
    assert benchmarking.movielens_shape(50_000)[0] < 943  # extrapolated below ml-100k


def test_extrapolate_scale_power_law():
    rows = [
        {"ratings": 10, "prep s": 1.0, "epoch s": 2.0, "peak RSS GiB": 1.0},
        {"ratings": 100, "prep s": 10.0, "epoch s": 20.0, "peak RSS GiB": 1.0},
    ]
    guess = benchmarking.extrapolate_scale(rows, 1000)
    assert guess["prep s"] == pytest.approx(100.0) and guess["epoch s"] == pytest.approx(200.0)
    assert guess["peak RSS GiB"] == pytest.approx(1.0) and guess["note"] == "EXTRAPOLATED"


def test_vectors_shapes_and_exact_top_k_chunked():
    candidates = benchmarking.clustered_vectors(500, 9, seed=0, num_clusters=8)
    queries = benchmarking.random_vectors(70, 9, seed=1)
    assert candidates.shape == (500, 9) and candidates.dtype == np.float32
    top = benchmarking.exact_top_k_chunked(queries, candidates, 5, chunk=16)
    best = np.argmax(queries @ candidates.T, axis=1)
    assert top.shape == (70, 5) and np.array_equal(top[:, 0], best)


def test_target_lines():
    assert benchmarking.Target("x", 3.0, 2.0, at_least=True).met
    assert not benchmarking.Target("x", 3.0, 2.0, at_least=False).met
    assert benchmarking.Target("p50", 1.5, 2.0, at_least=False).line().startswith("MET")


def test_tutorial_model_builds_and_trains_one_step():
    import tensorflow as tf

    from tfrs_movies.data import synthetic_ratings

    ratings = synthetic_ratings(num_users=30, num_movies=40, num_ratings=300, seed=0)
    train, movies, users, titles = benchmarking.tutorial_datasets(ratings)
    for metrics in (False, True):
        model = benchmarking.tutorial_model(
            users, titles, movies, embedding_dim=8, compute_metrics=metrics
        )
        model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
        history = model.fit(train.batch(256).take(1), epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0])
        # The metric is tracked either way; only with metrics is it ever updated (40 movies:
        # top-100 accuracy is 1 when computed).
        top_100 = history["factorized_top_k/top_100_categorical_accuracy"][0]
        assert top_100 == (1.0 if metrics else 0.0)
