"""Raw MovieLens reader: layouts, tfds semantics, zips, duplicates."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import RATINGS_CSV, write_files

from tfrs_movies.data import GENRES, OCCUPATIONS, load_source
from tfrs_movies.data.movielens import read_movielens


def genre_names(ratings, movie_row: int) -> list[str]:
    return [GENRES[i] for i in np.flatnonzero(ratings.movie_genres[movie_row])]


def test_ml100k_counts(ml100k_dir: Path):
    ratings = load_source(str(ml100k_dir))
    assert (ratings.num_users, ratings.num_movies, ratings.num_ratings) == (943, 1682, 100_000)
    assert ratings.name == "ml-100k"
    assert ratings.rating.dtype == np.float32 and ratings.timestamp.dtype == np.int64
    assert set(np.unique(ratings.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ratings.num_duplicates_dropped == 0
    # u.data's first line: 196 242 3 881250949.
    example = ratings.examples()
    assert example["user_id"][0] == "196" and example["movie_id"][0] == "242"
    assert example["user_rating"][0] == 3.0 and example["timestamp"][0] == 881250949


def test_ml100k_semantics_match_tfds(ml100k_dir: Path):
    ratings = read_movielens(str(ml100k_dir))
    assert ratings.movie_titles[0] == "Toy Story (1995)"
    assert genre_names(ratings, 0) == ["Animation", "Children", "Comedy"]
    # Movie 267 has only the "unknown" flag, which tfds names "Unknown".
    row = int(np.flatnonzero(ratings.movie_ids == "267")[0])
    assert genre_names(ratings, row) == ["Unknown"]
    features = ratings.user_features
    # u.user line 1: 1|24|M|technician|85711 -> age bucket 18, male, technician/engineer.
    assert features["bucketized_user_age"][0] == 18.0
    assert features["bucketized_user_age"].dtype == np.float32
    assert bool(features["user_gender"][0]) is True
    assert OCCUPATIONS[features["user_occupation_label"][0]] == "technician/engineer"
    assert features["user_zip_code"][0] == "85711"
    assert set(np.unique(features["bucketized_user_age"])) <= {1, 18, 25, 35, 45, 50, 56}


def test_tiny_100k_latin1_buckets_and_genres(tiny_100k: Path):
    ratings = read_movielens(str(tiny_100k))
    assert ratings.movie_titles[1] == "Caf\xe9 au lait (1993)"  # decoded as ISO-8859-1
    assert genre_names(ratings, 0) == ["Animation", "Children", "Comedy"]
    assert genre_names(ratings, 1) == ["Drama"]
    assert genre_names(ratings, 2) == ["Unknown"]
    features = ratings.user_features
    np.testing.assert_array_equal(features["bucketized_user_age"], [18, 1, 56])
    np.testing.assert_array_equal(features["user_gender"], [True, False, True])
    labels = [OCCUPATIONS[i] for i in features["user_occupation_label"]]
    assert labels == ["technician/engineer", "student", "other/not specified"]


def test_tiny_1m_layout(tiny_1m: Path):
    ratings = read_movielens(str(tiny_1m))
    assert (ratings.num_users, ratings.num_movies, ratings.num_ratings) == (2, 2, 3)
    # "Children's" is tfds' "Children".
    assert genre_names(ratings, 0) == ["Animation", "Children", "Comedy"]
    features = ratings.user_features
    np.testing.assert_array_equal(features["bucketized_user_age"], [1.0, 56.0])
    # Codes 10 (K-12 student) and 4 (college/grad student) both become "student".
    assert [OCCUPATIONS[i] for i in features["user_occupation_label"]] == ["student", "student"]
    np.testing.assert_array_equal(features["user_gender"], [False, True])
    assert ratings.examples()["timestamp"].tolist() == [978300760, 978302109, 978301968]


def test_tiny_csv_layout(tiny_csv: Path):
    ratings = read_movielens(str(tiny_csv))
    assert ratings.user_features == {}
    assert ratings.user_ids.tolist() == ["1", "7"]
    assert ratings.movie_titles[1] == "American President, The (1995)"
    assert genre_names(ratings, 2) == ["(no genres listed)"]
    np.testing.assert_array_equal(ratings.rating, np.array([4.0, 0.5, 4.5], dtype=np.float32))
    assert ratings.examples()["movie_id"].tolist() == ["1", "11", "1"]


@pytest.mark.parametrize("top_folder", ["", "ml-latest-small/"])
def test_zip_with_or_without_top_folder(tiny_csv: Path, tmp_path: Path, top_folder: str):
    archive = tmp_path / "copy.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in tiny_csv.iterdir():
            zf.write(file, top_folder + file.name)
    from_zip = read_movielens(str(archive))
    from_folder = read_movielens(str(tiny_csv))
    assert from_zip.num_ratings == from_folder.num_ratings == 3
    np.testing.assert_array_equal(from_zip.movie_ids, from_folder.movie_ids)
    np.testing.assert_array_equal(from_zip.rating, from_folder.rating)


def test_parent_folder_of_extracted_copy(tiny_100k: Path):
    # tmp/ml-100k/u.data: pointing at tmp/ finds the one layout folder inside.
    ratings = read_movielens(str(tiny_100k.parent))
    assert ratings.num_ratings == 4


def test_latest_small_zip_counts(latest_small_zip: Path):
    ratings = load_source(str(latest_small_zip))
    assert (ratings.num_users, ratings.num_movies, ratings.num_ratings) == (610, 9742, 100_836)
    assert ratings.name == "ml-latest-small"


def test_duplicates_keep_latest(tmp_path: Path, tiny_csv: Path, caplog):
    extra = "1,1,2.0,964990000\n1,1,3.0,964980000\n"  # a later 2.0 and an earlier 3.0 for (1, 1)
    write_files(tiny_csv, {"ratings.csv": RATINGS_CSV + extra})
    with caplog.at_level("WARNING"):
        ratings = read_movielens(str(tiny_csv))
    assert ratings.num_duplicates_dropped == 2
    assert ratings.num_ratings == 3
    assert "dropped 2 duplicate" in caplog.text
    pairs = {
        (u, m): (r, t)
        for u, m, r, t in zip(
            ratings.user_index.tolist(),
            ratings.movie_index.tolist(),
            ratings.rating.tolist(),
            ratings.timestamp.tolist(),
            strict=True,
        )
    }
    assert pairs[(0, 0)] == (2.0, 964990000)


def test_raw_reader_does_not_import_tensorflow(ml100k_dir: Path):
    import subprocess
    import sys

    code = (
        "import sys; from tfrs_movies.data import load_source; "
        f"load_source({str(ml100k_dir)!r}); load_source('synthetic:users=20,movies=20,ratings=50');"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
