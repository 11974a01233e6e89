"""One entry point for every data source: ``load_source(SOURCE)``.

SOURCE is one string:

* a path to a MovieLens folder or ``.zip`` (see :mod:`tfrs_movies.data.movielens`);
* ``tfds:movielens/<config>`` with config one of 100k-ratings, 1m-ratings, 20m-ratings,
  25m-ratings, latest-small-ratings;
* ``synthetic`` or ``synthetic:users=…,movies=…,ratings=…,seed=…``.

The default is ``$TFRS_MOVIES_DATA`` when set, else ``tfds:movielens/100k-ratings``.
"""

from __future__ import annotations

import logging
import os

from tfrs_movies.data.movielens import read_movielens
from tfrs_movies.data.schema import Ratings
from tfrs_movies.data.synthetic import parse_synthetic_spec, synthetic_ratings
from tfrs_movies.data.tfds_source import load_tfds
from tfrs_movies.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "tfds:movielens/100k-ratings"
SOURCE_ENV = "TFRS_MOVIES_DATA"


def default_source() -> str:
    """``$TFRS_MOVIES_DATA`` if set and non-empty, else :data:`DEFAULT_SOURCE`."""
    return os.environ.get(SOURCE_ENV, "").strip() or DEFAULT_SOURCE


def load_source(
    source: str | os.PathLike | None = None,
    *,
    manual_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Ratings:
    """Loads ratings from a SOURCE string.

    Args:
        source: see the module docstring; None means :func:`default_source`.
        manual_dir: for ``tfds:`` sources, the folder holding the GroupLens archive (offline).
        data_dir: for ``tfds:`` sources, the tfds data directory.
        progress: show progress (tfds progress bars; INFO log lines for raw files).

    Returns:
        Ratings in the canonical schema: movie table (M,), user table (U,), R ratings.

    Raises:
        DataError: unknown source, missing/malformed files, or a failed download (the message
            says how to point at a local copy instead).
    """
    text = os.fspath(source) if source is not None else default_source()
    text = str(text).strip()
    if not text:
        raise DataError("empty data source; expected a path, tfds:movielens/<config> or synthetic")
    if text.startswith("tfds:"):
        return load_tfds(
            text[len("tfds:") :], data_dir=data_dir, manual_dir=manual_dir, progress=progress
        )
    if text == "synthetic" or text.startswith("synthetic:"):
        options = parse_synthetic_spec(text)
        return synthetic_ratings(
            num_users=options["users"],
            num_movies=options["movies"],
            num_ratings=options["ratings"],
            seed=options["seed"],
        )
    path = os.path.expanduser(text)
    if not os.path.exists(path):
        raise DataError(
            "no such file or folder; expected a MovieLens folder or .zip, "
            "tfds:movielens/<config> (e.g. tfds:movielens/100k-ratings), or "
            "synthetic[:users=N,movies=N,ratings=N,seed=N]",
            path=text,
        )
    return read_movielens(path, progress=progress)
