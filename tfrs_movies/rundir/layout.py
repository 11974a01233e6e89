"""The run-directory layout: names of its files, :class:`RunPaths`, and the plain-file writers.

Also the checksum every writer and checker shares: :func:`sha256`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Format 2 (issue 12) adds the new-person signatures: retrieval_index.fold_in and
# .recommend_for_ratings, ranking_model.score_for_ratings. Format 1 runs still load; the
# Recommender folds new people in with numpy for them.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)

# File and folder names, relative to the run directory (POSIX, as the manifest lists them).
CONFIG = "config.json"
METRICS = "metrics.json"
# The next metrics.json while update_metrics replaces it (see manifest.update_metrics).
METRICS_PENDING = "metrics.json.pending"
MANIFEST = "manifest.json"
RETRIEVAL_INDEX = "retrieval_index"
EXACT_INDEX = "exact_index"
RANKING_MODEL = "ranking_model"
VOCAB = "vocab"
MOVIES_CSV = "vocab/movies.csv"
USERS_TXT = "vocab/users.txt"
MOVIE_VECTORS = "vocab/movie_vectors.npy"
SEEN = "seen"
SEEN_INDPTR = "seen/indptr.npy"
SEEN_MOVIES = "seen/movies.npy"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
PARTIAL_SUFFIX = ".partial"

MOVIES_CSV_COLUMNS = ("movie_id", "title", "genres", "num_train_ratings")
# Files without which a run cannot be used; each SavedModel needs its graph and variable index.
REQUIRED_FILES = (
    CONFIG,
    METRICS,
    MOVIES_CSV,
    USERS_TXT,
    MOVIE_VECTORS,
    SEEN_INDPTR,
    SEEN_MOVIES,
    *(
        f"{model}/{name}"
        for model in (RETRIEVAL_INDEX, EXACT_INDEX, RANKING_MODEL)
        for name in ("saved_model.pb", "variables/variables.index")
    ),
)
# Every file under these folders must be listed in the manifest (e.g. a variables shard).
ARTIFACT_DIRS = (RETRIEVAL_INDEX, EXACT_INDEX, RANKING_MODEL, VOCAB, SEEN)
# Listed in the manifest but not verified: a run is usable without them.
UNVERIFIED_DIRS = (CHECKPOINTS, TENSORBOARD)


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where each part of one run directory lives.

    Attributes:
        root: the run directory (complete runs only exist under this name).
    """

    root: Path

    @property
    def partial(self) -> Path:
        """``<root>.partial``: where the run is written until :func:`finalize_run`."""
        return self.root.with_name(self.root.name + PARTIAL_SUFFIX)

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def metrics_pending(self) -> Path:
        return self.root / METRICS_PENDING

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def retrieval_index(self) -> Path:
        return self.root / RETRIEVAL_INDEX

    @property
    def exact_index(self) -> Path:
        return self.root / EXACT_INDEX

    @property
    def ranking_model(self) -> Path:
        return self.root / RANKING_MODEL

    @property
    def movies_csv(self) -> Path:
        return self.root / MOVIES_CSV

    @property
    def users_txt(self) -> Path:
        return self.root / USERS_TXT

    @property
    def movie_vectors(self) -> Path:
        return self.root / MOVIE_VECTORS

    @property
    def seen_indptr(self) -> Path:
        return self.root / SEEN_INDPTR

    @property
    def seen_movies(self) -> Path:
        return self.root / SEEN_MOVIES

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD


def write_vocab(
    run_dir: Path,
    *,
    user_ids: Sequence[str],
    movie_ids: Sequence[str],
    titles: Sequence[str],
    genres: Sequence[str],
    num_train_ratings: Sequence[int],
    movie_vectors: np.ndarray,
) -> None:
    """Writes ``vocab/``: the users, the movies and the (M, dim) float32 movie vectors.

    Row i of ``movies.csv`` (after the header) and of ``movie_vectors.npy`` is the movie the
    indexes' ``rows`` signatures call i; the movie arguments are (M,) sequences in that order.
    ``genres`` are ``|``-joined genre names.
    """
    paths = RunPaths(run_dir)
    paths.movies_csv.parent.mkdir(exist_ok=True)
    with open(paths.movies_csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MOVIES_CSV_COLUMNS)
        for row in zip(movie_ids, titles, genres, num_train_ratings, strict=True):
            writer.writerow([str(row[0]), str(row[1]), str(row[2]), int(row[3])])
    paths.users_txt.write_text("".join(f"{user}\n" for user in user_ids), encoding="utf-8")
    np.save(paths.movie_vectors, np.asarray(movie_vectors, np.float32), allow_pickle=False)


def write_seen(run_dir: Path, indptr: np.ndarray, movie_rows: np.ndarray) -> None:
    """Writes ``seen/``: each user's training movies in CSR form.

    Args:
        run_dir: the (partial) run directory.
        indptr: (num_users + 1,) offsets; user i (row i of ``users.txt``) saw
            ``movie_rows[indptr[i]:indptr[i + 1]]``.
        movie_rows: (nnz,) rows of ``movies.csv``, ascending within each user.
    """
    paths = RunPaths(run_dir)
    paths.seen_indptr.parent.mkdir(exist_ok=True)
    np.save(paths.seen_indptr, np.asarray(indptr, np.int64), allow_pickle=False)
    np.save(paths.seen_movies, np.asarray(movie_rows, np.int32), allow_pickle=False)


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(run_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``run_dir`` except the manifest, by relative POSIX path."""
    return {
        path.relative_to(run_dir).as_posix(): sha256(path)
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.relative_to(run_dir).as_posix() != MANIFEST
    }
