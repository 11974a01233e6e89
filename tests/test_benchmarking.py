"""Fast tests of the benchmark helpers in scripts/benchmarks (the benchmarks themselves are
scripts; pyproject's pytest ``pythonpath`` makes their folder importable)."""

from __future__ import annotations

import math
import time

import common
import http_load
import index_speed
import numpy as np
import pytest
import scale
import step_time
import tensorflow as tf
import throughput
import tutorial

from tfrs_movies import export
from tfrs_movies.data import synthetic_ratings
from tfrs_movies.data.synthetic import movielens_shape, parse_synthetic_spec


def test_latency_summary_is_numpy_percentile_in_milliseconds():
    summary = common.latency_summary([0.001] * 98 + [0.010, 0.020])
    assert summary["p50_ms"] == pytest.approx(1.0)
    assert summary["p90_ms"] == pytest.approx(1.0)
    # Linear interpolation at rank 0.99 * 99 = 98.01, between 10 ms and 20 ms.
    assert summary["p99_ms"] == pytest.approx(10.1)
    assert summary["max_ms"] == pytest.approx(20.0)
    assert summary["mean_ms"] == pytest.approx((0.098 + 0.030) / 100 * 1e3)


def test_load_test_summary_counts_and_handles_an_endpoint_with_no_requests():
    summary = http_load.summarize([0.002, 0.004])
    assert summary["count"] == 2 and summary["p50_ms"] == pytest.approx(3.0)
    empty = http_load.summarize([])
    assert empty["count"] == 0 and math.isnan(empty["p99_ms"])


def test_timed_records_wall_and_cpu_seconds():
    store: dict[str, float] = {}
    with common.timed(store, "x"):
        time.sleep(0.05)
    assert store["x"] >= 0.05
    assert store["x_cpu"] < store["x"] / 2  # sleeping costs wall time, not CPU time


def test_peak_rss_grows_with_allocation():
    before = common.peak_rss_bytes()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB touched
    assert block.sum() > 0
    assert common.peak_rss_bytes() >= max(before, 64 * 2**20)


def test_format_table_and_growth_factors():
    rows = scale.growth_factors(
        [{"ratings": 100, "prep s": 1.0}, {"ratings": 1000, "prep s": 5.0, "note": "x"}],
        ["prep s"],
    )
    assert rows[1]["ratings_x"] == 10 and rows[1]["prep s_x"] == 5
    text = common.format_table(rows, ["ratings", "prep s", "note"])
    lines = text.splitlines()
    assert lines[0].split() == ["ratings", "prep", "s", "note"]
    assert lines[2].split() == ["100", "1", "-"] and lines[3].split() == ["1,000", "5", "x"]


def test_parse_sizes():
    assert common.parse_sizes("100_000, 1e6,") == [100_000, 1_000_000]


def test_default_data_source_prefers_the_environment(monkeypatch):
    monkeypatch.setenv("TFRS_MOVIES_DATA", "synthetic")
    assert common.default_data_source() == "synthetic"
    monkeypatch.delenv("TFRS_MOVIES_DATA")
    assert common.default_data_source() == str(common.REPO.parent / "shared/data/movielens/ml-100k")


def test_movielens_shape_hits_the_real_releases():
    assert movielens_shape(100_000) == (943, 1682)
    assert movielens_shape(25_000_095) == (162_541, 62_423)
    users, movies = movielens_shape(3_000_000)
    assert 6_040 < users < 69_878 and 3_706 < movies < 10_677
    assert movielens_shape(50_000)[0] < 943  # extrapolated below ml-100k
    # A synthetic source that names only its size takes the MovieLens shape of that size.
    spec = parse_synthetic_spec("synthetic:ratings=25000000")
    assert (spec["users"], spec["movies"]) == (162_541, 62_422)
    assert parse_synthetic_spec("synthetic:ratings=1000,users=50")["users"] == 50
    assert parse_synthetic_spec("synthetic")["users"] == 943


def test_extrapolate_scale_power_law():
    rows = [
        {"ratings": 10, "prep s": 1.0, "epoch s": 2.0, "peak RSS GiB": 1.0},
        {"ratings": 100, "prep s": 10.0, "epoch s": 20.0, "peak RSS GiB": 1.0},
    ]
    guess = scale.extrapolate_scale(rows, 1000)
    assert guess["prep s"] == pytest.approx(100.0) and guess["epoch s"] == pytest.approx(200.0)
    assert guess["peak RSS GiB"] == pytest.approx(1.0) and guess["note"] == "EXTRAPOLATED"


def test_vectors_shapes_and_exact_top_k_in_chunks():
    candidates = index_speed.clustered_vectors(500, 9, seed=0, num_clusters=8)
    queries = index_speed.random_vectors(70, 9, seed=1)
    assert candidates.shape == (500, 9) and candidates.dtype == np.float32
    top = export.exact_top_k(queries, candidates, 5, chunk=16)
    best = np.argmax(queries @ candidates.T, axis=1)
    assert top.shape == (70, 5) and np.array_equal(top[:, 0], best)
    np.testing.assert_array_equal(top, export.exact_top_k(queries, candidates, 5, chunk=70))


def test_target_lines():
    assert common.Target("x", 3.0, 2.0, at_least=True).met
    assert not common.Target("x", 3.0, 2.0, at_least=False).met
    assert common.Target("p50", 1.5, 2.0, at_least=False).line().startswith("MET")
    assert common.Target("qps", 1.5, 2.0, at_least=True).line().startswith("MISS")


def test_tutorial_model_builds_and_trains_one_step():
    ratings = synthetic_ratings(num_users=30, num_movies=40, num_ratings=300, seed=0)
    train, movies, users, titles = tutorial.tutorial_datasets(ratings)
    for metrics in (False, True):
        model = tutorial.TutorialModel(
            users, titles, movies, embedding_dim=8, compute_metrics=metrics
        )
        model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
        history = model.fit(train.batch(256).take(1), epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0])
        # The metric is tracked either way; only with metrics is it ever updated (40 movies:
        # top-100 accuracy is 1 when computed).
        top_100 = history["factorized_top_k/top_100_categorical_accuracy"][0]
        assert top_100 == (1.0 if metrics else 0.0)


def test_median_run_keeps_the_median_run_and_lists_every_value():
    values = iter([3.0, 1.0, 2.0])
    median = throughput.median_run(lambda: {"examples_per_s": next(values), "tag": "x"}, 3)
    assert median["examples_per_s"] == 2.0 and median["tag"] == "x"
    assert median["examples_per_s_runs"] == [1.0, 2.0, 3.0]


def test_step_time_rows_report_vocabulary_and_relative_step_time():
    rows = step_time.vocabulary_step_times(
        [200, 800], steps=2, repeats=1, overrides=["train.batch_size=64"]
    )
    assert [row["batch"] for row in rows] == [64, 64]
    assert rows[0]["users"] < rows[1]["users"] and rows[0]["movies"] < rows[1]["movies"]
    assert rows[0]["step_x"] == 1.0 and rows[1]["step ms"] > 0
