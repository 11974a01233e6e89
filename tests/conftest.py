"""Shared fixtures: where the MovieLens copies are, a tfds build of ml-latest-small, and small
hand-written MovieLens folders in every layout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Lets `pytest` run from a fresh clone without `pip install -e .`.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import tfrs_movies  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before anything loads TensorFlow)

SHARED_DATA_ENV = "TFRS_MOVIES_SHARED_DATA"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder holding ``movielens/``.

    ``$TFRS_MOVIES_SHARED_DATA`` if set, else ``<repo>/../shared/data``.
    """
    configured = os.environ.get(SHARED_DATA_ENV)
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (path / "movielens").is_dir():
        pytest.skip(
            f"MovieLens copies not found at {path}/movielens; set {SHARED_DATA_ENV} to the folder "
            "holding movielens/ml-100k and movielens/ml-latest-small.zip"
        )
    return path


@pytest.fixture(scope="session")
def ml100k_dir(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "movielens" / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.skip(f"{path} (extracted MovieLens 100K) is not present")
    return path


@pytest.fixture(scope="session")
def latest_small_zip(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "movielens" / "ml-latest-small.zip"
    if not path.is_file():
        pytest.skip(f"{path} (the GroupLens ml-latest-small archive) is not present")
    return path


@pytest.fixture(scope="session")
def tfds_data_dir(tmp_path_factory, latest_small_zip: Path) -> Path:
    """A tfds data_dir with movielens/latest-small-{ratings,movies} built offline (~15-30 s)."""
    pytest.importorskip("tensorflow_datasets")
    from tfrs_movies.data.tfds_source import load_tfds

    data_dir = tmp_path_factory.mktemp("tfds")
    load_tfds(
        "movielens/latest-small-ratings",
        data_dir=data_dir,
        manual_dir=latest_small_zip.parent,
        progress=False,
    )
    return data_dir


# Small MovieLens copies in each layout, with the quirks the readers must handle.

U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|Caf\xe9 au lait (1993)|01-Jan-1993||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "3|unknown|||http://x|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)
U_USER = "1|24|M|technician|85711\n2|17|F|student|94043\n3|56|M|none|32067\n"
U_DATA = "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t3\t1\t881250951\n3\t1\t4\t881250952\n"

MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
)
USERS_DAT = "1::F::1::10::48067\n2::M::56::4::70072\n"
RATINGS_DAT = "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n"

MOVIES_CSV = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    "20,Unrated Movie (2001),(no genres listed)\n"
)
RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,0.5,964981247\n7,1,4.5,964982224\n"
)


def write_files(folder: Path, files: dict[str, str], encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.encode(encoding))
    return folder


@pytest.fixture
def tiny_100k(tmp_path: Path) -> Path:
    return write_files(
        tmp_path / "ml-100k",
        {"u.item": U_ITEM, "u.user": U_USER, "u.data": U_DATA},
        encoding="ISO-8859-1",
    )


@pytest.fixture
def tiny_1m(tmp_path: Path) -> Path:
    return write_files(
        tmp_path / "ml-1m",
        {"movies.dat": MOVIES_DAT, "users.dat": USERS_DAT, "ratings.dat": RATINGS_DAT},
        encoding="ISO-8859-1",
    )


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    return write_files(
        tmp_path / "ml-latest-small", {"movies.csv": MOVIES_CSV, "ratings.csv": RATINGS_CSV}
    )


TINY_OVERRIDES = (
    "data.source=synthetic:users=100,movies=120,ratings=3000,seed=0",
    "train.epochs=2",
    "train.batch_size=256",
    "eval.baselines=false",
    "train.tensorboard=false",
)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A complete run directory trained for 2 epochs on tiny synthetic data (~15 s, once)."""
    # Imported here: test files that need no run (the data tests) never load TensorFlow.
    from tfrs_movies.config import load_config
    from tfrs_movies.train import train_and_evaluate

    config = load_config(None, TINY_OVERRIDES)
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    return train_and_evaluate(config, run_dir, log=lambda message: None).run_dir


@pytest.fixture
def exact_search(monkeypatch):
    """``use_exact(recommender)``: the Recommender searches its run's exact (brute-force)
    index instead of ScaNN for the rest of the test.

    For tests that compare answers computed in batches of different sizes: a batch's products
    round differently in the last bits, and a query near the edge of a ScaNN partition can
    then search other leaves (seen once in four CI runs); exact search has no edges.
    """

    def use_exact(recommender) -> None:
        import tensorflow as tf

        from tfrs_movies.recommend.graphs import single_graph
        from tfrs_movies.rundir import RunPaths

        exact = tf.saved_model.load(str(RunPaths(recommender.run_dir).exact_index))
        monkeypatch.setattr(recommender, "_index_search_rows", single_graph(exact.search_rows))

    return use_exact
