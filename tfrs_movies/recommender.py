"""Load a run directory and recommend: retrieve with ScaNN, drop seen movies, re-rank.

Downstream code needs only::

    from tfrs_movies import Recommender
    recommender = Recommender.load("runs/ml100k")
    recommender.recommend("42", k=10)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.errors import ArtifactError
from tfrs_movies.export import FORMAT_VERSION, file_checksums

logger = logging.getLogger(__name__)

# Files whose absence or corruption makes a run unusable; checkpoints and logs are not needed.
_REQUIRED = ("retrieval_index", "exact_index", "ranking_model", "vocab", "seen", "config.json")


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One recommended (or similar) movie.

    Attributes:
        rank: 1-based position in the returned list.
        movie_id, title, genres: the movie.
        retrieval_score: dot product of user and movie vectors (for similar movies: cosine).
        predicted_rating: the rating model's prediction on the star scale (None for similar).
        num_ratings: training ratings of the movie.
    """

    rank: int
    movie_id: str
    title: str
    genres: str
    retrieval_score: float
    predicted_rating: float | None
    num_ratings: int

    def to_dict(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies every value, 10x slower.
        return {field.name: getattr(self, field.name) for field in _RECOMMENDATION_FIELDS}


_RECOMMENDATION_FIELDS = dataclasses.fields(Recommendation)


def verify_run(run_dir: Path) -> dict[str, Any]:
    """Checks a run directory against its manifest.

    Returns:
        The manifest.

    Raises:
        ArtifactError: missing manifest or file, checksum mismatch, unknown format version, or
            library versions that cannot load the SavedModels.
    """
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        partial = run_dir.with_name(run_dir.name + ".partial")
        hint = (
            f" ({partial} exists: the run was interrupted; resume it)" if partial.exists() else ""
        )
        raise ArtifactError(f"{run_dir} is not a complete run directory: no manifest.json{hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as error:
        raise ArtifactError(f"{manifest_path} is not valid JSON: {error}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{run_dir} has run format {manifest.get('format_version')}; this tfrs_movies reads "
            f"format {FORMAT_VERSION}"
        )
    expected = manifest.get("files", {})
    for name in _REQUIRED:
        if not any(path == name or path.startswith(name + "/") for path in expected):
            raise ArtifactError(f"{run_dir}: manifest lists no {name}")
    actual = file_checksums(run_dir)
    for path, digest in expected.items():
        if path.startswith(("checkpoints/", "tensorboard/")):
            continue
        if path not in actual:
            raise ArtifactError(f"{run_dir / path} is missing (listed in manifest.json)")
        if actual[path] != digest:
            raise ArtifactError(
                f"{run_dir / path} is corrupt: its sha256 does not match manifest.json"
            )
    _check_versions(manifest.get("versions", {}), run_dir)
    return manifest


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _check_versions(saved: Mapping[str, str], run_dir: Path) -> None:
    import importlib.metadata as md

    for package in ("tensorflow", "scann"):
        want = saved.get(package)
        try:
            have = md.version(package)
        except md.PackageNotFoundError:
            raise ArtifactError(
                f"{run_dir} needs {package} {want}, which is not installed "
                f"(pip install 'tfrs-movies')"
            ) from None
        if want and _major_minor(want) != _major_minor(have):
            raise ArtifactError(
                f"{run_dir} was exported with {package} {want} but {package} {have} is installed; "
                f"install {package}=={want} (ScaNN's ops must match the TensorFlow they were "
                "built for)"
            )


class Recommender:
    """Recommendations from an exported run directory.

    Use :meth:`load`; the constructor takes already-loaded parts (for tests and tools).
    """

    def __init__(
        self,
        run_dir: Path,
        retrieval_index,
        ranking_model,
        movies: dict[str, np.ndarray],
        user_ids: np.ndarray,
        movie_vectors: np.ndarray,
        seen_indptr: np.ndarray,
        seen_movies: np.ndarray,
        manifest: dict[str, Any],
        config: dict[str, Any],
    ):
        self.run_dir = run_dir
        self.retrieval_index = retrieval_index
        self.ranking_model = ranking_model
        self.movie_ids = movies["movie_id"]
        self.titles = movies["title"]
        self.genres = movies["genres"]
        self.num_ratings = movies["num_train_ratings"]
        self.user_ids = user_ids
        self.movie_vectors = movie_vectors
        self.seen_indptr = seen_indptr
        self.seen_movies = seen_movies
        self.manifest = manifest
        self.config = config
        self.temperature = float(self.config["model"]["temperature"])
        # Set by use_numpy_rescoring: known users' tower outputs and the numpy rating head.
        self.user_vectors: np.ndarray | None = None
        self.rating_head = None
        # The index functions' one traced graph, called directly: skips TensorFlow's dispatch
        # on the arguments (~0.1 ms a call).
        self._index_rows = _single_graph(retrieval_index.rows)
        self._index_search_rows = _single_graph(retrieval_index.search_rows)
        self._user_row = {uid: row for row, uid in enumerate(user_ids.tolist())}
        self._movie_row = {mid: row for row, mid in enumerate(self.movie_ids.tolist())}
        self._title_rows: dict[str, list[int]] = {}
        for row, title in enumerate(self.titles.tolist()):
            self._title_rows.setdefault(title, []).append(row)
        # Fixed-width bytes: TensorFlow takes them without per-string conversion.
        self._id_bytes = np.array([m.encode() for m in self.movie_ids.tolist()])
        embedding = movie_vectors[:, :-1]  # the last column is the retrieval bias
        norms = np.linalg.norm(embedding, axis=1, keepdims=True)
        self._unit_vectors = embedding / np.maximum(norms, 1e-12)
        # Fold-in operands, made once: float64 vectors, and their free (non-bias) columns
        # contiguous in float64 and float32 (see _fold_in).
        self._fold_in_movies = movie_vectors.astype(np.float64)
        self._fold_in_free = np.ascontiguousarray(self._fold_in_movies[:, :-1])
        self._fold_in_free32 = self._fold_in_free.astype(np.float32)

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls, run_dir: str | Path, verify: bool = True, numpy_rescoring: bool = True
    ) -> Recommender:
        """Loads a run directory written by training.

        Args:
            run_dir: the run directory.
            verify: check every file against the manifest's sha256 and the library versions
                (without it, the manifest is read but nothing is checked).
            numpy_rescoring: re-score candidates with the ranking model's rating head copied
                into numpy (several times faster per call than the SavedModel), used only if
                it reproduces the SavedModel's predictions at load; False always calls the
                SavedModel.

        Raises:
            ArtifactError: missing/corrupt files or incompatible versions (named in the message).
        """
        import scann  # noqa: F401 - registers the Scann ops that retrieval_index needs
        import tensorflow as tf

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise ArtifactError(f"run directory {run_dir} does not exist")
        if verify:
            manifest = verify_run(run_dir)
        else:  # read as it is, if it is there
            try:
                manifest = json.loads((run_dir / "manifest.json").read_text())
            except (OSError, ValueError):
                manifest = {}
        try:
            with open(run_dir / "vocab" / "movies.csv", newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            movies = {
                "movie_id": np.array([r["movie_id"] for r in rows], dtype=object),
                "title": np.array([r["title"] for r in rows], dtype=object),
                "genres": np.array([r["genres"] for r in rows], dtype=object),
                "num_train_ratings": np.array([int(r["num_train_ratings"]) for r in rows]),
            }
            user_ids = np.array(
                (run_dir / "vocab" / "users.txt").read_text(encoding="utf-8").split("\n")[:-1],
                dtype=object,
            )
            movie_vectors = np.load(run_dir / "vocab" / "movie_vectors.npy", allow_pickle=False)
            indptr = np.load(run_dir / "seen" / "indptr.npy", allow_pickle=False)
            seen = np.load(run_dir / "seen" / "movies.npy", allow_pickle=False)
            config = json.loads((run_dir / "config.json").read_text())
            # exact_index/ is for downstream checks; the Recommender's exact fallback is numpy.
            retrieval = tf.saved_model.load(str(run_dir / "retrieval_index"))
            ranking = tf.saved_model.load(str(run_dir / "ranking_model"))
        except (OSError, KeyError, ValueError) as error:
            raise ArtifactError(f"cannot load {run_dir}: {error}") from None
        recommender = cls(
            run_dir,
            retrieval,
            ranking,
            movies,
            user_ids,
            movie_vectors,
            indptr,
            seen,
            manifest,
            config,
        )
        if numpy_rescoring:
            recommender.use_numpy_rescoring()
        return recommender

    def use_numpy_rescoring(self) -> bool:
        """Switches re-scoring to the rating head in numpy, if it matches the SavedModel.

        Computes every known user's tower output once (one SavedModel call per 4,096 users),
        copies the rating head's variables, and compares both ways of scoring on a sample.

        Returns:
            True if numpy re-scoring is on; False (with a warning logged) if the head could not
            be read or differs from the SavedModel by more than
            :data:`~tfrs_movies.rescoring.MATCH_TOLERANCE` stars.
        """
        import tensorflow as tf

        from tfrs_movies import rescoring

        user_vectors = (
            np.concatenate(
                [
                    self.retrieval_index.query_vectors(
                        tf.constant(self.user_ids[s : s + 4096].astype(str))
                    ).numpy()
                    for s in range(0, len(self.user_ids), 4096)
                ]
            )
            if len(self.user_ids)
            else np.zeros((0, self.movie_vectors.shape[1]), np.float32)
        )
        try:
            head = rescoring.from_savedmodel(self.ranking_model, self.movie_vectors)
            difference = rescoring.max_difference(
                head, self.ranking_model, self.user_ids, user_vectors, self.movie_ids
            )
        except (AttributeError, ValueError) as error:
            logger.warning(
                "re-scoring with the SavedModel: cannot read its rating head (%s)", error
            )
            return False
        if not difference <= rescoring.MATCH_TOLERANCE:
            logger.warning(
                "re-scoring with the SavedModel: the numpy rating head differs by %.2g stars",
                difference,
            )
            return False
        self.user_vectors, self.rating_head = user_vectors, head
        return True

    # ----------------------------------------------------------------------------- lookups
    def movie_row(self, movie: str | int) -> int:
        """Row of a movie given by id or by exact title.

        Raises:
            KeyError: unknown id/title, or a title shared by several movies (ids listed).
        """
        key = str(movie)
        if key in self._movie_row:
            return self._movie_row[key]
        rows = self._title_rows.get(key)
        if rows is None:
            raise KeyError(f"unknown movie {movie!r}: not a movie id or exact title of this run")
        if len(rows) > 1:
            ids = ", ".join(self.movie_ids[r] for r in rows)
            raise KeyError(f"title {movie!r} is ambiguous: it names movies {ids}; pass an id")
        return rows[0]

    def seen_rows(self, user_row: int) -> np.ndarray:
        """Movie rows the user rated in the training split."""
        return self.seen_movies[self.seen_indptr[user_row] : self.seen_indptr[user_row + 1]]

    def _records(
        self, rows: Sequence[int], scores: Sequence[float], ratings: Sequence[float] | None
    ) -> list[Recommendation]:
        return [
            Recommendation(
                rank=i + 1,
                movie_id=str(self.movie_ids[row]),
                title=str(self.titles[row]),
                genres=str(self.genres[row]),
                retrieval_score=float(scores[i]),
                predicted_rating=None if ratings is None else float(ratings[i]),
                num_ratings=int(self.num_ratings[row]),
            )
            for i, row in enumerate(rows)
        ]

    @staticmethod
    def _check_k(k: int, name: str = "k") -> None:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
            raise ValueError(f"{name} must be a positive integer, got {k!r}")

    # ----------------------------------------------------------------------------- recommend
    def recommend(
        self,
        user_ids: str | int | Iterable[str | int],
        k: int = 10,
        num_candidates: int = 100,
        exclude_seen: bool = True,
        min_ratings: int = 0,
        rerank_weight: float | None = None,
    ):
        """Top-k movies for known users: retrieve, filter, re-rank by predicted rating.

        ScaNN retrieves candidates; movies the user rated in training (``exclude_seen``) and
        movies with fewer than ``min_ratings`` training ratings are dropped; the first
        ``num_candidates`` survivors are re-scored by the ranking model, blended with the
        retrieval logit (see ``rerank_weight``), and the best ``k`` returned. When fewer than
        ``num_candidates`` survive the index's answer, the user's
        candidates come from exact search over the whole catalogue instead. If fewer than ``k``
        movies are left at all, the list is shorter than ``k``.

        Args:
            user_ids: one user id, or an iterable of them (vectorized).
            k: how many movies per user.
            num_candidates: how many retrieved movies to re-rank (>= k).
            exclude_seen: drop movies the user rated in the training split.
            min_ratings: drop movies with fewer training ratings than this.
            rerank_weight: how much the predicted rating counts in the final order:
                ``retrieval_score / temperature + rerank_weight * predicted_rating``. 0 keeps
                the retrieval order; a large value orders by predicted rating alone. None uses
                :data:`DEFAULT_RERANK_WEIGHT`.

        Returns:
            A list of :class:`Recommendation` for one user id, or a list of such lists.

        Raises:
            KeyError: an unknown user id (use :meth:`recommend_for_ratings` for new users).
            ValueError: k, num_candidates or min_ratings out of range.
        """
        single = isinstance(user_ids, (str, int, np.integer))
        users = [str(user_ids)] if single else [str(u) for u in user_ids]
        self._check_k(k)
        self._check_k(num_candidates, "num_candidates")
        if min_ratings < 0:
            raise ValueError(f"min_ratings must be >= 0, got {min_ratings!r}")
        if not users:
            return []
        rows = []
        for user in users:
            if user not in self._user_row:
                raise KeyError(
                    f"unknown user {user!r}: not in this run's training data; "
                    "use recommend_for_ratings for a new user"
                )
            rows.append(self._user_row[user])
        import tensorflow as tf

        scores, movie_rows = self._index_rows(tf.constant(users))
        candidate_rows, candidate_scores = self._filter(
            [self.seen_rows(row) if exclude_seen else None for row in rows],
            movie_rows.numpy(),
            scores.numpy(),
            max(k, num_candidates),
            min_ratings,
            lambda i: self._query_vector(rows[i]),
        )
        return self._finish(
            candidate_rows,
            candidate_scores,
            k,
            rerank_weight,
            single,
            lambda candidates: self._score_known(np.asarray(rows), candidates),
        )

    def _query_vector(self, user_row: int) -> np.ndarray:
        """(dim,) the user tower's output for a known user."""
        if self.user_vectors is not None:
            return self.user_vectors[user_row]
        import tensorflow as tf

        user = tf.constant([str(self.user_ids[user_row])])
        return self.retrieval_index.query_vectors(user).numpy()[0]

    def _score_known(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """(Q, C) predicted ratings of known users (rows) for candidate movie rows (Q, C)."""
        if self.rating_head is not None and movie_rows.size <= _NUMPY_RESCORING_MAX_ROWS:
            return self.rating_head(user_rows + 1, self.user_vectors[user_rows], movie_rows)
        import tensorflow as tf

        users = tf.constant(self.user_ids[user_rows].astype(str))
        return self.ranking_model.score_candidates(
            users, tf.constant(self._id_bytes[movie_rows])
        ).numpy()

    def _score_vectors(self, vectors: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """(Q, C) predicted ratings of people given by query vectors (Q, dim), unknown bias."""
        if self.rating_head is not None and movie_rows.size <= _NUMPY_RESCORING_MAX_ROWS:
            return self.rating_head(np.zeros(len(vectors), np.int64), vectors, movie_rows)
        import tensorflow as tf

        return self.ranking_model.score_vectors(
            tf.constant(vectors), tf.constant(self._id_bytes[movie_rows])
        ).numpy()

    def _filter(self, excluded, movie_rows, scores, wanted, min_ratings, query_vector):
        """Per query: the candidates that pass the filters, best first, at most ``wanted``.

        Args:
            excluded: per query, movie rows to drop (or None).
            movie_rows, scores: (Q, K) the index's answer (rows of the movie table, scores;
                padding has a non-finite score).
            wanted: how many candidates to keep per query.
            min_ratings: drop movies with fewer training ratings.
            query_vector: ``i -> (dim,)`` query vector of query i, for the exact fallback.

        Returns:
            (rows, scores): per query, int64 movie rows and their retrieval scores.
        """
        movie_rows = movie_rows.astype(np.int64)
        # ScaNN pads a batch's answers to the longest one: a query that found fewer movies
        # gets NaN scores (and the first movie's id) in its last columns.
        found = np.isfinite(scores)
        movie_rows = np.where(found, movie_rows, 0)
        keep = self._keep_matrix(movie_rows, excluded, min_ratings) & found
        # Position of each kept candidate among its query's kept ones; keep the first `wanted`.
        rank = np.cumsum(keep, axis=1)
        keep &= rank <= wanted
        counts = keep.sum(axis=1)
        all_rows = np.split(movie_rows[keep], np.cumsum(counts)[:-1])
        all_scores = np.split(scores[keep], np.cumsum(counts)[:-1])
        if movie_rows.shape[1] < len(self.movie_ids):
            for i in np.flatnonzero(counts < wanted):
                # The index's answer ran out after filtering: exact search over the catalogue.
                query_scores = self.movie_vectors @ query_vector(i)
                order = np.argsort(-query_scores, kind="stable")
                mask = self._keep_matrix(order[None, :], excluded[i : i + 1], min_ratings)[0]
                all_rows[i] = order[mask][:wanted]
                all_scores[i] = query_scores[order][mask][:wanted]
        return all_rows, all_scores

    def _keep_matrix(self, movie_rows, excluded, min_ratings):
        """(Q, K) bool: candidates that are neither excluded for their query nor too rare."""
        keep = np.ones(movie_rows.shape, bool)
        sizes = [0 if drop is None else len(drop) for drop in excluded]
        if sum(sizes):
            query_of_drop = np.repeat(np.arange(len(excluded)), sizes)
            drops = np.concatenate([d for d in excluded if d is not None and len(d)])
            n = len(self.movie_ids)
            if len(excluded) * n <= _DENSE_MASK_LIMIT:
                # One scatter into a dense (Q, N) mask, then one gather: the fastest way here.
                dropped = np.zeros((len(excluded), n), bool)
                dropped[query_of_drop, drops] = True
                keep &= ~np.take_along_axis(dropped, movie_rows, 1)
            else:
                # Membership of (query, movie) pairs as one integer key per pair.
                keys = np.arange(len(excluded))[:, None] * n + movie_rows
                keep &= ~np.isin(keys, query_of_drop * n + drops)
        if min_ratings > 0:
            keep &= self.num_ratings[movie_rows] >= min_ratings
        return keep

    def _finish(self, candidate_rows, candidate_scores, k, rerank_weight, single, score_fn):
        """Re-ranks each query's candidates with one batched ranking call; builds records.

        ``score_fn`` maps (Q, C) candidate movie rows (padded with row 0) to (Q, C) predicted
        ratings.
        """
        width = max((len(rows) for rows in candidate_rows), default=0)
        if width == 0:
            results: list[list[Recommendation]] = [[] for _ in candidate_rows]
            return results[0] if single else results
        padded = np.zeros((len(candidate_rows), width), np.int64)
        for i, rows in enumerate(candidate_rows):
            padded[i, : len(rows)] = rows
        predicted = score_fn(padded)
        if rerank_weight is None:
            rerank_weight = DEFAULT_RERANK_WEIGHT
        results = []
        for i, rows in enumerate(candidate_rows):
            ratings = predicted[i, : len(rows)]
            blended = candidate_scores[i] / self.temperature + rerank_weight * ratings
            order = np.argsort(-blended, kind="stable")[:k]
            results.append(self._records(rows[order], candidate_scores[i][order], ratings[order]))
        return results[0] if single else results

    # ----------------------------------------------------------------------------- similar
    def similar_movies(self, movie: str | int, k: int = 10) -> list[Recommendation]:
        """The k movies whose embeddings are closest (cosine) to the given movie's.

        Args:
            movie: a movie id or an exact title.
            k: how many (fewer if the catalogue is smaller).

        Raises:
            KeyError: unknown or ambiguous movie; ValueError: k <= 0.
        """
        self._check_k(k)
        row = self.movie_row(movie)
        similarity = self._unit_vectors @ self._unit_vectors[row]
        similarity[row] = -np.inf
        count = min(k, len(similarity) - 1)
        if count <= 0:
            return []
        top = np.argpartition(-similarity, count - 1)[:count]
        top = top[np.argsort(-similarity[top], kind="stable")]
        return self._records(top, similarity[top], None)

    # ----------------------------------------------------------------------------- new users
    def user_vector(self, ratings: Mapping[str | int, float]) -> np.ndarray:
        """Folds a new user into the trained model: the query vector that explains their movies.

        The movie vectors stay fixed; the user vector minimizes the same catalogue softmax the
        retrieval task trained with (each rated movie a positive, weighted by its rating: 2 stars
        or less count 5%, 4 stars or more fully) plus an L2 penalty. That objective is convex,
        so a few Newton steps reach its minimum (loss within ~1e-6, typically 2-3 steps; about
        0.5 ms for 1,682 movies); the result is deterministic. The last coordinate stays 1 (the
        bias coordinate).

        Args:
            ratings: ``{movie id or exact title: rating}``; at least one.

        Returns:
            (dim,) float32 query vector.

        Raises:
            ValueError: empty ratings or a rating outside 0.5-5; KeyError: unknown movie.
        """
        return self._fold_in_rows(*self._rated_rows(ratings))

    def _fold_in_rows(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """:meth:`user_vector` of rated movie rows (n,) and their ratings (n,)."""
        # Training counts every rating as "chose to watch"; a person telling us a rating also
        # says how much they liked it, so poorly rated movies pull the vector much less.
        weights = np.clip((values - 2.0) / 2.0, 0.05, 1.0)
        target = (weights[:, None] * self._fold_in_movies[rows]).sum(0) / weights.sum()
        return _fold_in(
            self._fold_in_movies, self._fold_in_free, self._fold_in_free32, target, self.temperature
        )

    def _rated_rows(self, ratings: Mapping[str | int, float]) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(ratings, Mapping) or not ratings:
            raise ValueError("ratings must be a non-empty mapping {movie id or title: rating}")
        rows, values = [], []
        for movie, rating in ratings.items():
            try:
                value = float(rating)
            except (TypeError, ValueError):
                raise ValueError(f"rating of {movie!r} must be a number, got {rating!r}") from None
            if not 0.5 <= value <= 5.0:
                raise ValueError(f"rating of {movie!r} must be within 0.5-5, got {rating!r}")
            rows.append(self.movie_row(movie))
            values.append(value)
        return np.asarray(rows, np.int64), np.asarray(values, np.float32)

    def recommend_for_ratings(
        self,
        ratings: Mapping[str | int, float],
        k: int = 10,
        num_candidates: int = 100,
        min_ratings: int = 0,
        rerank_weight: float | None = None,
    ) -> list[Recommendation]:
        """Recommendations for a person who was not in training, from a few of their ratings.

        Args:
            ratings: ``{movie id or exact title: rating}``; the rated movies are never returned.
            k, num_candidates, min_ratings, rerank_weight: as in :meth:`recommend`.

        Raises:
            ValueError: empty ratings, bad rating values or k; KeyError: unknown movie.
        """
        import tensorflow as tf

        self._check_k(k)
        self._check_k(num_candidates, "num_candidates")
        rows, values = self._rated_rows(ratings)
        vector = self._fold_in_rows(rows, values)
        scores, movie_rows = self._index_search_rows(tf.constant(vector[None, :]))
        candidate_rows, candidate_scores = self._filter(
            [rows],
            movie_rows.numpy(),
            scores.numpy(),
            max(k, num_candidates),
            min_ratings,
            lambda i: vector,
        )

        def score(candidates: np.ndarray) -> np.ndarray:
            # One call scores the candidates and the rated movies; the person's rating bias
            # (the ranking model has none for them) is their mean residual on the latter.
            both = self._score_vectors(
                vector[None, :], np.concatenate([candidates, rows[None, :]], axis=1)
            )
            offset = np.mean(values - both[0, -len(rows) :])
            return both[:, : -len(rows)] + offset

        return self._finish(candidate_rows, candidate_scores, k, rerank_weight, True, score)


def _single_graph(function):
    """A restored SavedModel function's only concrete function (the same graph, called without
    the polymorphic dispatch); the function itself when it has several or is not restored."""
    graphs = getattr(function, "concrete_functions", None)
    return graphs[0] if graphs is not None and len(graphs) == 1 else function


# Most (query, candidate) pairs re-scored in numpy per call; bigger batches go to the SavedModel,
# whose multi-threaded kernels win there (measured on ml-100k, 100 candidates per user: numpy
# 0.07 ms vs 0.52 ms for 1 user, 0.64 vs 2.3 ms for 16, 5.9 vs 6.7 ms for 64, 115 vs 51 ms for
# 1,000).
_NUMPY_RESCORING_MAX_ROWS = 4096

# Largest (queries x movies) boolean mask built for the seen-movie filter (64 MB).
_DENSE_MASK_LIMIT = 64_000_000

# Measured on ml-100k (see README): ordering purely by predicted rating halves Recall@10, since
# a high predicted rating does not mean the user would choose the movie; a small weight keeps
# the retrieval order and lets the rating break near-ties (0.25 measured best of 0-2).
DEFAULT_RERANK_WEIGHT = 0.25


def _fold_in(movies, free, free32, target, temperature, max_steps=20):
    """Minimizes ``logsumexp(movies @ v / T) - target @ v / T + L2 * |v|^2`` over ``v[:-1]``
    (``v[-1] = 1``, the bias coordinate) by Newton steps with backtracking.

    Args:
        movies: (N, D) float64 movie vectors; ``free`` and ``free32``: their first D-1
            columns, contiguous, in float64 and float32.
        target: (D,) rating-weighted mean of the rated movies' vectors.
        temperature: the retrieval softmax temperature T.

    Returns:
        (D,) float32 minimizer, started from ``target`` (its last coordinate set to 1).
    """
    penalty, scale = _FOLD_IN_L2, 1.0 / temperature
    vector = target.copy()
    vector[-1] = 1.0

    def softmax_and_loss(v):
        logits = movies @ v * scale
        top = logits.max()
        exps = np.exp(logits - top)
        total = exps.sum()
        loss = top + np.log(total) - scale * (target @ v) + penalty * (v @ v)
        return exps / total, loss

    probabilities, loss = softmax_and_loss(vector)
    inverse_hessian = None
    for _ in range(max_steps):
        mean = probabilities @ free
        gradient = scale * (mean - target[:-1]) + 2 * penalty * vector[:-1]
        if inverse_hessian is None:
            # The Hessian at the start serves every step (it changes little near the optimum):
            # each later step costs two matrix-vector products instead of a (D, N) x (N, D)
            # product. In float32 it is ~4x cheaper again; an inexact Hessian only slows the
            # convergence, not the point converged to (the gradient is float64).
            weighted = free32 * probabilities.astype(np.float32)[:, None]
            hessian = scale**2 * ((weighted.T @ free32) - np.outer(mean, mean))
            hessian.flat[:: len(hessian) + 1] += 2 * penalty
            inverse_hessian = np.linalg.inv(hessian)
        step = inverse_hessian @ gradient
        decrease = float(gradient @ step)  # > 0: the Hessian is positive definite
        if decrease < 1e-6:  # the loss is within ~1e-6 of its minimum (vector within ~1e-4)
            break
        size = 1.0
        while True:  # backtracking (Armijo) line search; a full step is nearly always taken
            candidate = vector.copy()
            candidate[:-1] -= size * step
            candidate_probabilities, candidate_loss = softmax_and_loss(candidate)
            if candidate_loss <= loss - 0.25 * size * decrease or size < 1e-4:
                break
            size *= 0.5
        vector, probabilities, loss = candidate, candidate_probabilities, candidate_loss
    return vector.astype(np.float32)


# L2 weight on a folded-in user vector, relative to the mean softmax loss over the rated movies.
# Tuned on ml-100k (default config): 3-10 best reproduce the trained users' top-50 from 10 ratings.
_FOLD_IN_L2 = 5.0
