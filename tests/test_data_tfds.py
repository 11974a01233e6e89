"""tfds source: equivalence with the raw reader, and offline failures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tfrs_movies import cli
from tfrs_movies.data import load_source
from tfrs_movies.errors import DataError


def as_multiset(ratings) -> Counter:
    columns = ratings.examples()
    return Counter(
        zip(
            columns["user_id"].tolist(),
            columns["movie_id"].tolist(),
            columns["movie_title"].tolist(),
            columns["user_rating"].tolist(),
            columns["timestamp"].tolist(),
            [tuple(genres.tolist()) for genres in columns["movie_genres"]],
            strict=True,
        )
    )


def test_tfds_equals_raw_on_latest_small(tfds_data_dir: Path, latest_small_zip: Path):
    from_tfds = load_source(
        "tfds:movielens/latest-small-ratings",
        data_dir=tfds_data_dir,
        manual_dir=latest_small_zip.parent,
        progress=False,
    )
    from_raw = load_source(str(latest_small_zip))
    assert (from_tfds.num_users, from_tfds.num_movies, from_tfds.num_ratings) == (
        610,
        9742,
        100_836,
    )
    assert as_multiset(from_tfds) == as_multiset(from_raw)
    # Tables line up too (both ordered by numeric id), so vocabularies agree across sources.
    np.testing.assert_array_equal(from_tfds.movie_ids, from_raw.movie_ids)
    np.testing.assert_array_equal(from_tfds.user_ids, from_raw.user_ids)
    np.testing.assert_array_equal(from_tfds.movie_genres, from_raw.movie_genres)
    assert from_tfds.movie_titles.tolist() == from_raw.movie_titles.tolist()


def test_cli_data_info_tfds(tfds_data_dir: Path, latest_small_zip: Path, capsys):
    status = cli.main(
        [
            "data",
            "info",
            "tfds:movielens/latest-small-ratings",
            "--manual-dir",
            str(latest_small_zip.parent),
            "--data-dir",
            str(tfds_data_dir),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "610" in out and "9,742" in out and "100,836" in out


def test_offline_download_failure_says_how_to_work_offline(tmp_path: Path, monkeypatch, capsys):
    pytest.importorskip("tensorflow_datasets")
    from tfrs_movies.data import tfds_source

    # Simulate no network whether or not this machine has one.
    monkeypatch.setattr(tfds_source, "_host_resolves", lambda host, timeout_s=5.0: False)
    empty = tmp_path / "manual"
    empty.mkdir()
    with pytest.raises(DataError) as caught:
        load_source("tfds:movielens/100k-ratings", data_dir=tmp_path / "tfds", manual_dir=empty)
    message = str(caught.value)
    assert "ml-100k.zip" in message and "--manual-dir" in message and "folder or .zip" in message
    status = cli.main(
        ["data", "info", "tfds:movielens/100k-ratings", "--data-dir", str(tmp_path / "tfds")]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_download_exception_is_wrapped(tmp_path: Path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from tfrs_movies.data import tfds_source

    def broken(self, *args, **kwargs):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(tfds_source, "_host_resolves", lambda host, timeout_s=5.0: True)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", broken)
    with pytest.raises(DataError, match="connection refused.*--manual-dir"):
        load_source("tfds:movielens/1m-ratings", data_dir=tmp_path, progress=False)


def test_unknown_tfds_config():
    with pytest.raises(DataError, match="100k-ratings"):
        load_source("tfds:movielens/100k-movies")


def test_default_source_uses_env(monkeypatch, tiny_csv: Path):
    monkeypatch.setenv("TFRS_MOVIES_DATA", str(tiny_csv))
    assert load_source().num_ratings == 3
