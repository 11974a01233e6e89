"""Tests of tfrs_movies.experiments.carves and scripts/compare_on_carves.py: paired gaps, the
validation carves, and a seconds-long comparison on synthetic data."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tfrs_movies.config import load_config
from tfrs_movies.data.prepare import RUN_CARVE, carve_validation, prepare_data
from tfrs_movies.errors import ConfigError
from tfrs_movies.evaluation.baselines import EASE_GRID
from tfrs_movies.experiments.carves import (
    METRICS,
    PEERS,
    compare_on_carves,
    format_carve,
    paired_gap,
    parse_carves,
)

TINY = [
    "data.source=synthetic:users=60,movies=150,ratings=3000,seed=0",
    "train.epochs=3",
    "train.batch_size=256",
    "train.tensorboard=false",
]


def test_paired_gap_known_answers():
    # Every user 1 above a reference of mean 2: +50%, no spread.
    assert paired_gap(np.array([2.0, 4.0]), np.array([1.0, 3.0])) == pytest.approx((0.5, 0.0))
    # Differences 0, 2, 1: mean 1, sample sd 1, standard error 1 / sqrt(3); reference mean 1.
    gap, error = paired_gap(np.array([1.0, 3.0, 2.0]), np.ones(3))
    assert (gap, error) == pytest.approx((1.0, 1 / math.sqrt(3)), abs=1e-12)
    for values, reference in (
        (np.ones(3), np.ones(2)),  # different users
        (np.ones(1), np.ones(1)),  # one user: no standard error
        (np.ones(3), np.zeros(3)),  # a relative gap over 0
    ):
        with pytest.raises(ValueError):
            paired_gap(values, reference)


def test_parse_carves():
    assert parse_carves("3, 4,5") == [3, 4, 5]
    for text, message in (
        (str(RUN_CARVE), "the run's own carve"),
        ("3,3", "listed twice"),
        ("3,x", "not an integer"),
        (" , ", "at least one"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_carves(text)


def test_carves_partition_the_training_split_and_the_run_uses_its_own():
    run = prepare_data(load_config(None, TINY), log=lambda message: None)
    fraction, cap = 0.2, 10**9

    def carve(seed, share=fraction, max_ratings=cap):
        return carve_validation(run.ratings, run.train, run.test, share, max_ratings, seed)

    own = carve([42, RUN_CARVE])
    assert np.array_equal(own.validation.movie_index, run.validation.movie_index)
    assert np.array_equal(own.validation.user_index, run.validation.user_index)
    other = carve([42, 3])
    assert not np.array_equal(other.validation.movie_index, run.validation.movie_index)
    assert np.array_equal(carve([42, 3]).validation.user_index, other.validation.user_index)

    # fit and validation split the training ratings between them.
    def pairs(split):
        return set(zip(split.user_index.tolist(), split.movie_index.tolist(), strict=True))

    train_pairs, fit_pairs, held = pairs(run.train), pairs(other.fit), pairs(other.validation)
    assert fit_pairs | held == train_pairs and not fit_pairs & held
    assert abs(len(held) / len(train_pairs) - fraction) < 0.05
    assert carve([42, 3], share=0).validation.num_ratings == 0
    assert carve([42, 3], max_ratings=100).validation.num_ratings < 150  # the cap lowers the share


def test_compare_on_carves_end_to_end(capsys):
    config = load_config(None, TINY)
    lines: list[str] = []
    comparison = compare_on_carves(config, [3], log=lines.append)
    assert 1 <= comparison.epochs <= 3
    assert set(comparison.ials_params) == {"factors", "regularization", "alpha", "iterations"}
    assert comparison.ease_params["l2"] in EASE_GRID["l2"]
    (row,) = comparison.carves
    assert row.carve == 3 and row.num_users > 0
    assert lines[-1] == format_carve(row)
    for peer in PEERS:
        for metric in METRICS:
            # The mean paired gap is the difference of the means, relative to the peer's.
            model, other = row.means["model"][metric], row.means[peer][metric]
            assert 0 <= model <= 1 and 0 < other <= 1
            gap, error = row.gaps[peer][metric]
            assert gap == pytest.approx((model - other) / other, abs=1e-9)
            assert error >= 0
            assert comparison.mean_gaps()[peer][metric] == gap  # one carve
    with pytest.raises(ConfigError, match="the run's own"):
        compare_on_carves(config, [RUN_CARVE])


def test_script_reports_bad_carves_in_one_line(capsys):
    path = Path(__file__).parents[1] / "scripts" / "compare_on_carves.py"
    spec = importlib.util.spec_from_file_location("compare_on_carves", path)
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    assert script.main(["--carves", "1", *TINY]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --carves: 1 is the run's own carve")
    assert "Traceback" not in error
