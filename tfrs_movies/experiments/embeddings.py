"""The movie side of a finished run: ids, titles, genres, rating counts and embeddings."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from tfrs_movies.errors import ArtifactError
from tfrs_movies.rundir import RunPaths

# Genre cells that mean "no genre": empty, or the ml-latest releases' placeholder.
NO_GENRE = ("", "(no genres listed)")


@dataclasses.dataclass(frozen=True)
class MovieEmbeddings:
    """The movie side of a run.

    Attributes:
        movie_ids: (n,) str movie ids, in vocabulary order.
        titles: (n,) str titles.
        genres: n tuples of genre names (possibly empty).
        num_ratings: (n,) int training ratings per movie.
        vectors: (n, dim) float32 movie embeddings (retrieval bias column dropped).
    """

    movie_ids: np.ndarray
    titles: np.ndarray
    genres: list[tuple[str, ...]]
    num_ratings: np.ndarray
    vectors: np.ndarray

    def subset(self, keep: np.ndarray) -> MovieEmbeddings:
        """The movies where the (n,) boolean ``keep`` is true."""
        return MovieEmbeddings(
            self.movie_ids[keep],
            self.titles[keep],
            [g for g, k in zip(self.genres, keep, strict=True) if k],
            self.num_ratings[keep],
            self.vectors[keep],
        )


def load_movie_embeddings(run_dir: str | Path) -> MovieEmbeddings:
    """Reads ``vocab/movies.csv`` and ``vocab/movie_vectors.npy`` of a run.

    Raises:
        ArtifactError: files missing, or their row counts disagree.
    """
    paths = RunPaths(Path(run_dir))
    movies_path, vectors_path = paths.movies_csv, paths.movie_vectors
    for path in (movies_path, vectors_path):
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; is {run_dir} a finished run directory?")
    with open(movies_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    vectors = np.load(vectors_path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(rows) or vectors.shape[1] < 2:
        raise ArtifactError(
            f"{vectors_path} has shape {vectors.shape}; expected ({len(rows)}, dim + 1) to match "
            f"{movies_path}"
        )
    return MovieEmbeddings(
        movie_ids=np.array([r["movie_id"] for r in rows], dtype=object),
        titles=np.array([r["title"] for r in rows], dtype=object),
        genres=[tuple(g for g in r["genres"].split("|") if g not in NO_GENRE) for r in rows],
        num_ratings=np.array([int(r["num_train_ratings"] or 0) for r in rows], np.int64),
        vectors=vectors[:, :-1].astype(np.float32),
    )
