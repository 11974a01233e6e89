"""Loads MovieLens through TensorFlow Datasets into the canonical columnar form.

TensorFlow and tensorflow_datasets are imported inside the functions, so the rest of the data
package (raw folders, synthetic data, splits) works without loading TensorFlow.

The ``movielens/<version>-ratings`` dataset holds one example per rating; the movie table comes
from the matching ``movielens/<version>-movies`` dataset (built from the same archive), so movies
nobody rated are in the table too, exactly as with the raw reader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading

import numpy as np

from tfrs_movies.data.schema import NUM_GENRES, finish_ratings
from tfrs_movies.errors import DataError, one_line

logger = logging.getLogger(__name__)

TFDS_CONFIGS: tuple[str, ...] = (
    "100k-ratings",
    "1m-ratings",
    "20m-ratings",
    "25m-ratings",
    "latest-small-ratings",
)
# The archive tfds downloads for each version (what --manual-dir must hold).
ARCHIVES: dict[str, str] = {
    "100k": "ml-100k.zip",
    "1m": "ml-1m.zip",
    "20m": "ml-20m.zip",
    "25m": "ml-25m.zip",
    "latest-small": "ml-latest-small.zip",
}
_DOWNLOAD_HOST = "files.grouplens.org"
_DEMOGRAPHIC_VERSIONS = ("100k", "1m")
_BATCH = 65536


def parse_tfds_name(name: str) -> str:
    """Validates ``movielens/<config>`` (or a bare config) and returns the config.

    Raises:
        DataError: not one of :data:`TFDS_CONFIGS`.
    """
    config = name.split("/", 1)[1] if name.startswith("movielens/") else name
    if config not in TFDS_CONFIGS:
        choices = ", ".join(f"tfds:movielens/{c}" for c in TFDS_CONFIGS)
        raise DataError(f"unknown tfds source 'tfds:{name}'; expected one of {choices}")
    return config


def _host_resolves(host: str, timeout_s: float = 5.0) -> bool:
    """Whether DNS can resolve ``host`` within ``timeout_s`` (offline machines fail fast here).

    tfds retries an unresolvable host with backoff for minutes before giving up, so a quick
    look-up first turns "offline" into an immediate, actionable error.
    """
    result: list[bool] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, 443)
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=look_up, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def _offline_advice(config: str, manual_dir: str | None) -> str:
    version = config.rsplit("-", 1)[0]
    archive = ARCHIVES[version]
    where = f" (looked in --manual-dir {manual_dir})" if manual_dir else ""
    return (
        f"To work offline, point at a local copy: pass a MovieLens folder or .zip path as "
        f"SOURCE (e.g. ./ml-{version} or ./{archive}), or pass --manual-dir DIR where DIR holds "
        f"the genuine GroupLens archive {archive}{where}."
    )


def _prepare(tfds, name: str, config: str, data_dir, manual_dir, progress: bool):
    """Builds (or reuses) one tfds dataset; download failures become a DataError."""
    builder = tfds.builder(f"movielens/{name}", data_dir=data_dir)
    if builder.is_prepared():
        return builder
    version = config.rsplit("-", 1)[0]
    has_archive = bool(manual_dir) and os.path.isfile(
        os.path.join(os.fspath(manual_dir), ARCHIVES[version])
    )
    if not has_archive and not _host_resolves(_DOWNLOAD_HOST):
        raise DataError(
            f"cannot download tfds:movielens/{config}: {_DOWNLOAD_HOST} is unreachable (offline?). "
            + _offline_advice(config, manual_dir)
        )
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None
    )
    toggle = contextlib.nullcontext() if progress else _no_progress_bar(tfds)
    try:
        with toggle:
            builder.download_and_prepare(download_config=download_config)
    except DataError:
        raise
    except Exception as error:  # tfds raises many kinds (requests, OSError, checksum, ...)
        cause = f"{type(error).__name__}: {one_line(error)[:300]}"
        raise DataError(
            f"cannot download or prepare tfds:movielens/{config} ({cause}). "
            + _offline_advice(config, manual_dir)
        ) from error
    return builder


@contextlib.contextmanager
def _no_progress_bar(tfds):
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        tfds.enable_progress_bar()


def load_tfds(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    progress: bool = True,
):
    """Loads a tfds MovieLens ratings dataset.

    Args:
        name: ``movielens/<config>`` or ``<config>``, config one of :data:`TFDS_CONFIGS`.
        data_dir: tfds data directory (default: tfds' own, ``~/tensorflow_datasets``).
        manual_dir: folder holding the genuine GroupLens archive, to build offline.
        progress: show tfds' progress bars.

    Returns:
        Ratings: movie table from ``<version>-movies`` (M rows, tfds order), users sorted by id
        (numerically when all ids are digits), R ratings, demographics for 100k and 1m.

    Raises:
        DataError: unknown config, or download/preparation failed (with offline advice).
    """
    config = parse_tfds_name(name)
    if manual_dir is not None and not os.path.isdir(manual_dir):
        raise DataError(
            "--manual-dir is not a folder; expected the folder holding the GroupLens archive",
            path=os.fspath(manual_dir),
        )
    # Importing this module ran tfrs_movies/__init__.py, which set TF_USE_LEGACY_KERAS already.
    import tensorflow as tf
    import tensorflow_datasets as tfds

    version = config.rsplit("-", 1)[0]
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    ratings_builder = _prepare(tfds, config, config, data_dir, manual_dir, progress)
    movies_builder = _prepare(tfds, f"{version}-movies", config, data_dir, manual_dir, progress)

    def multi_hot(genres):
        return tf.reduce_any(tf.one_hot(genres, NUM_GENRES, on_value=True, off_value=False), 0)

    movies = movies_builder.as_dataset(split="train", shuffle_files=False).map(
        lambda x: (x["movie_id"], x["movie_title"], multi_hot(x["movie_genres"]))
    )
    movie_ids, titles, genres = _collect(tfds, movies, 3)
    # tfds stores examples shuffled; order the table by id (numerically when possible), which
    # is the order of GroupLens' files and so of the raw reader.
    movie_order = _id_order(movie_ids)
    movie_ids, titles, genres = movie_ids[movie_order], titles[movie_order], genres[movie_order]

    with_demographics = version in _DEMOGRAPHIC_VERSIONS
    demographic_keys = (
        ("bucketized_user_age", "user_gender", "user_occupation_label", "user_zip_code")
        if with_demographics
        else ()
    )
    keys = ("user_id", "movie_id", "user_rating", "timestamp", *demographic_keys)
    ratings = ratings_builder.as_dataset(split="train", shuffle_files=False).map(
        lambda x: tuple(x[k] for k in keys), num_parallel_calls=tf.data.AUTOTUNE
    )
    columns = _collect(tfds, ratings, len(keys))
    user_bytes, movie_bytes, rating, timestamp = columns[:4]

    movie_table = _decode(movie_ids)
    user_keys, first_row, user_index = np.unique(user_bytes, return_index=True, return_inverse=True)
    user_ids = _decode(user_keys)
    if all(u.isdigit() for u in user_ids.tolist()):
        # Match the raw reader's numeric user order.
        numeric_order = _id_order(user_keys)
        rank = np.empty_like(numeric_order)
        rank[numeric_order] = np.arange(len(numeric_order))
        user_ids, first_row, user_index = (
            user_ids[numeric_order],
            first_row[numeric_order],
            rank[user_index],
        )
    features = {}
    for key, column in zip(demographic_keys, columns[4:], strict=True):
        values = column[first_row]
        features[key] = _decode(values) if values.dtype.kind in "SO" else values

    order = np.argsort(movie_ids, kind="stable")
    position = np.searchsorted(movie_ids[order], movie_bytes)
    position = np.minimum(position, len(order) - 1)
    if not (movie_ids[order][position] == movie_bytes).all():
        raise DataError(
            f"tfds:movielens/{config} has ratings of movies missing from {version}-movies"
        )
    titles_obj = np.empty(len(titles), dtype=object)
    titles_obj[:] = [t.decode("utf-8") for t in titles]
    return finish_ratings(
        f"tfds:movielens/{config}",
        movie_ids=movie_table,
        movie_titles=titles_obj,
        movie_genres=genres.astype(bool),
        user_ids=user_ids,
        user_features=features,
        user_index=user_index.astype(np.int32),
        movie_index=order[position].astype(np.int32),
        rating=rating.astype(np.float32),
        timestamp=timestamp.astype(np.int64),
        where=f"tfds:movielens/{config}",
    )


def _collect(tfds, dataset, width: int) -> list[np.ndarray]:
    """Concatenates a dataset of ``width``-tuples of scalars (or fixed vectors) into columns."""
    parts: list[list[np.ndarray]] = [[] for _ in range(width)]
    for batch in tfds.as_numpy(dataset.batch(_BATCH).prefetch(2)):
        for column, values in zip(parts, batch, strict=True):
            column.append(values)
    columns = [np.concatenate(column) for column in parts]
    # Fixed-width bytes sort and compare in C; object arrays of bytes go through Python.
    return [c.astype("S") if c.dtype == object else c for c in columns]


def _id_order(ids: np.ndarray) -> np.ndarray:
    """Permutation sorting (N,) bytes ids numerically when all are digits, else bytewise."""
    if all(i.isdigit() for i in ids.tolist()):
        return np.argsort(ids.astype(np.int64), kind="stable")
    return np.argsort(ids, kind="stable")


def _decode(values: np.ndarray) -> np.ndarray:
    """bytes (N,) -> str (N,) (tfds strings are UTF-8)."""
    return np.array([v.decode("utf-8") for v in values.tolist()], dtype=str)
