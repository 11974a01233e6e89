"""Exported SavedModels: save -> load round trips, ScaNN vs exact search, plain-TF loading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_OVERRIDES
from tfrs_movies.config import IndexConfig, load_config, save_config

tf = pytest.importorskip("tensorflow")

from tfrs_movies import export  # noqa: E402
from tfrs_movies.data.prepare import prepare_data  # noqa: E402
from tfrs_movies.train.fit import (  # noqa: E402
    build_model,
    fit_model,
    make_optimizer,
    seed_everything,
)


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory):
    """A trained in-memory model and its export (no metrics, no manifest needed)."""
    config = load_config(None, TINY_OVERRIDES)
    prepared = prepare_data(config, log=lambda m: None)
    seed_everything(0)
    model = build_model(prepared, config)
    model.compile(optimizer=make_optimizer(config))
    fit_model(model, prepared, config, log=lambda m: None)
    run_dir = tmp_path_factory.mktemp("export")
    save_config(config, run_dir / "config.json")
    metrics: dict = {}
    export.export_run(model, prepared, config, metrics, run_dir, log=lambda m: None)
    return model, prepared, run_dir, metrics


def test_saved_indexes_return_the_in_memory_top_k(in_memory):
    model, prepared, run_dir, _ = in_memory
    user_ids = prepared.ratings.user_ids[prepared.user_row_of_vocab()[1:]].astype(str)
    movie_ids = prepared.ratings.movie_ids[prepared.movie_row_of_vocab()[1:]].astype(str)
    queries = model.user_tower(tf.range(1, prepared.num_users + 1)).numpy()
    catalogue = model.catalogue_vectors().numpy()[1:]
    expected = movie_ids[export.exact_top_k(queries, catalogue, 10)]
    exact = tf.saved_model.load(str(run_dir / "exact_index"))
    scores, ids = exact(tf.constant(user_ids))
    np.testing.assert_array_equal(ids.numpy()[:, :10].astype(str), expected)
    np.testing.assert_allclose(
        scores.numpy()[:, :10], np.sort(queries @ catalogue.T, axis=1)[:, ::-1][:, :10], rtol=1e-5
    )
    # `rows` answers with positions in vocab/movies.csv: the same movies as the ids.
    rows = exact.rows(tf.constant(user_ids))[1].numpy()
    np.testing.assert_array_equal(movie_ids[rows], ids.numpy().astype(str))
    scann_ids = tf.saved_model.load(str(run_dir / "retrieval_index"))(tf.constant(user_ids))[1]
    recall = export.recall_against_exact(scann_ids.numpy()[:, :10], ids.numpy()[:, :10])
    assert recall >= 0.95


def test_saved_ranking_model_matches_in_memory_predictions(in_memory):
    model, prepared, run_dir, _ = in_memory
    inputs = prepared.model_inputs(prepared.test)
    known = (inputs["user"] > 0) & (inputs["movie"] > 0)
    expected = model.predict_ratings(inputs["user"][known], inputs["movie"][known]).numpy()
    user_ids = prepared.ratings.user_ids[prepared.test.user_index[known]].astype(str)
    movie_ids = prepared.ratings.movie_ids[prepared.test.movie_index[known]].astype(str)
    ranking = tf.saved_model.load(str(run_dir / "ranking_model"))
    got = ranking(tf.constant(user_ids), tf.constant(movie_ids)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    served = ranking.signatures["serving_default"](
        user_ids=tf.constant(user_ids[:3]), movie_ids=tf.constant(movie_ids[:3])
    )
    np.testing.assert_allclose(served["predicted_rating"].numpy(), expected[:3], rtol=1e-5)


def test_scann_searching_everything_equals_exact_search():
    rng = np.random.default_rng(0)
    candidates = rng.normal(size=(500, 9)).astype(np.float32)
    queries = rng.normal(size=(50, 9)).astype(np.float32)
    layer = export.build_scann(
        candidates,
        np.arange(500).astype(str),
        k=10,
        num_leaves=1,
        num_leaves_to_search=1,
        num_reordering_candidates=500,
    )
    got = layer(tf.constant(queries))[1].numpy().astype(int)
    np.testing.assert_array_equal(got, export.exact_top_k(queries, candidates, 10))


def test_tuned_scann_reaches_the_target_recall():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(20, 16))
    candidates = centers[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))
    queries = rng.normal(size=(300, 16)).astype(np.float32)
    _, description = export.tune_scann(
        candidates.astype(np.float32),
        queries,
        50,
        IndexConfig(target_recall=0.95),
        log=lambda m: None,
    )
    assert description["num_leaves"] == round(np.sqrt(3000))
    assert description["recall_at_10_vs_exact"] >= 0.95


def test_plain_tensorflow_loads_the_index_in_a_fresh_process(tiny_run: Path):
    user = (tiny_run / "vocab" / "users.txt").read_text().split()[0]
    code = (
        "import scann, tensorflow as tf, sys\n"
        f"index = tf.saved_model.load({str(tiny_run / 'retrieval_index')!r})\n"
        f"scores, ids = index(tf.constant([{user!r}]))\n"
        "assert 'tfrs_movies' not in sys.modules\n"
        "print(scores.shape[1], ids.numpy()[0, 0].decode())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd="/"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    count, first = done.stdout.split()
    assert int(count) >= 10
    movies = (tiny_run / "vocab" / "movies.csv").read_text()
    assert f"\n{first}," in movies


def test_scann_builds_of_the_same_vectors_are_identical():
    # TFRS's random k-means starts gave another index on every build (README, "Performance");
    # build_scann's k-means++ starts must not. Clustered vectors, several leaves searched of
    # many, so that a different partition would change the answers.
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(30, 24))
    candidates = (centers[rng.integers(0, 30, 2500)] + 0.4 * rng.normal(size=(2500, 24))).astype(
        np.float32
    )
    identifiers = np.arange(len(candidates)).astype(str)
    queries = tf.constant(rng.normal(size=(400, 24)).astype(np.float32))
    answers = []
    for _ in range(3):
        layer = export.build_scann(candidates, identifiers, 50, 50, 5, 200)
        scores, ids = layer(queries)
        answers.append((scores.numpy(), ids.numpy()))
    for scores, ids in answers[1:]:
        np.testing.assert_array_equal(ids, answers[0][1])
        np.testing.assert_array_equal(scores, answers[0][0])
