"""Load a run directory and recommend: retrieve with ScaNN, drop seen movies, re-rank.

Downstream code needs only::

    from tfrs_movies import Recommender
    recommender = Recommender.load("runs/ml100k")
    recommender.recommend("42", k=10)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scann  # noqa: F401 - registers the Scann ops that retrieval_index needs
import tensorflow as tf

from tfrs_movies.errors import ArtifactError
from tfrs_movies.recommend import inputs, rescoring
from tfrs_movies.recommend.candidates import RescoredCandidates, select_candidates
from tfrs_movies.recommend.catalogue import Catalogue
from tfrs_movies.recommend.fold_in import FoldIn
from tfrs_movies.recommend.graphs import single_graph
from tfrs_movies.recommend.records import Recommendation, records
from tfrs_movies.rundir import RunPaths, verify_run


class Recommender:
    """Recommendations from an exported run directory.

    Use :meth:`load`; the constructor takes already-loaded parts (for tests and tools).

    Args:
        run_dir: the run directory.
        retrieval_index, ranking_model: the loaded ``retrieval_index/`` and ``ranking_model/``.
        catalogue: the run's users and movies.
        movie_vectors: (M, dim) movie tower outputs by movie row (last column: retrieval bias).
        seen_indptr, seen_movies: CSR of each user row's training movie rows.
        manifest, config: the run's ``manifest.json`` and ``config.json``.
    """

    def __init__(
        self,
        run_dir: Path,
        retrieval_index,
        ranking_model,
        catalogue: Catalogue,
        movie_vectors: np.ndarray,
        seen_indptr: np.ndarray,
        seen_movies: np.ndarray,
        manifest: dict[str, Any],
        config: dict[str, Any],
    ):
        self.run_dir = run_dir
        self.retrieval_index = retrieval_index
        self.ranking_model = ranking_model
        self.catalogue = catalogue
        self.movie_ids = catalogue.movies.ids
        self.titles = catalogue.titles
        self.genres = catalogue.genres
        self.num_ratings = catalogue.num_ratings
        self.user_ids = catalogue.users.ids
        self.movie_vectors = movie_vectors
        self.seen_indptr = seen_indptr
        self.seen_movies = seen_movies
        self.manifest = manifest
        self.config = config
        self.temperature = float(self.config["model"]["temperature"])
        self.rescorer = rescoring.Rescorer(ranking_model, self.user_ids, self.movie_ids)
        # The index functions' one traced graph, called directly: skips TensorFlow's dispatch
        # on the arguments and the concrete function's binding (~0.1 ms a call).
        self._index_rows = single_graph(retrieval_index.rows)
        self._index_search_rows = single_graph(retrieval_index.search_rows)
        embedding = movie_vectors[:, :-1]  # the last column is the retrieval bias
        norms = np.linalg.norm(embedding, axis=1, keepdims=True)
        self._unit_vectors = embedding / np.maximum(norms, 1e-12)
        # Runs of format 2 fold new people in inside their retrieval_index SavedModel; older
        # ones have no such signature and fold them in with numpy (the same minimization,
        # with the export's preconditioner where the SavedModel has one).
        graph = getattr(retrieval_index, "fold_in_graph", None)
        saved = getattr(graph, "inverse_hessian", None)
        preconditioner = None if saved is None else saved.numpy()
        self._numpy_fold_in = FoldIn(movie_vectors, self.temperature, preconditioner)
        self.exported_fold_in = single_graph(getattr(retrieval_index, "fold_in", None))
        self._log_popularity = np.log1p(np.asarray(self.num_ratings, np.float64))

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
        run_dir = Path(run_dir)
        paths = RunPaths(run_dir)
        if not run_dir.is_dir():
            raise ArtifactError(f"run directory {run_dir} does not exist")
        if verify:
            manifest = verify_run(run_dir)
        else:  # read as it is, if it is there
            try:
                manifest = json.loads(paths.manifest.read_text())
            except (OSError, ValueError):
                manifest = {}
        try:
            catalogue = Catalogue.read(paths)
            movie_vectors = np.load(paths.movie_vectors, allow_pickle=False)
            indptr = np.load(paths.seen_indptr, allow_pickle=False)
            seen = np.load(paths.seen_movies, allow_pickle=False)
            config = json.loads(paths.config.read_text())
            # exact_index/ is for downstream checks; the Recommender's exact fallback is numpy.
            retrieval = tf.saved_model.load(str(paths.retrieval_index))
            ranking = tf.saved_model.load(str(paths.ranking_model))
        except (OSError, KeyError, ValueError) as error:
            raise ArtifactError(f"cannot load {run_dir}: {error}") from None
        recommender = cls(
            run_dir, retrieval, ranking, catalogue, movie_vectors, indptr, seen, manifest, config
        )
        if numpy_rescoring:
            recommender.use_numpy_rescoring()
        return recommender

    def use_numpy_rescoring(self) -> bool:
        """Switches re-scoring to the rating head in numpy, if it matches the SavedModel.

        Computes every known user's tower output once (one SavedModel call per 4,096 users)
        and hands it to :meth:`~tfrs_movies.recommend.rescoring.Rescorer.use_numpy`.

        Returns:
            True if numpy re-scoring is on (see ``Rescorer.use_numpy`` for when it is not).
        """
        user_vectors = (
            np.concatenate(
                [
                    self.retrieval_index.query_vectors(
                        tf.constant(self.user_ids[start : start + 4096].astype(str))
                    ).numpy()
                    for start in range(0, len(self.user_ids), 4096)
                ]
            )
            if len(self.user_ids)
            else np.zeros((0, self.movie_vectors.shape[1]), np.float32)
        )
        return self.rescorer.use_numpy(self.movie_vectors, user_vectors)

    # ----------------------------------------------------------------------------- lookups
    def movie_row(self, movie: str | int) -> int:
        """Row of a movie given by id or by exact title.

        Raises:
            KeyError: unknown id/title, or a title shared by several movies (ids listed).
            ValueError: ``movie`` is neither a str nor an int (e.g. None).
        """
        return self.catalogue.movie_row(movie)

    def seen_rows(self, user_row: int) -> np.ndarray:
        """Movie rows the user rated in the training split."""
        return self.seen_movies[self.seen_indptr[user_row] : self.seen_indptr[user_row + 1]]

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
            user_ids: one user id (str or int), or an iterable of them (vectorized).
            k: how many movies per user (a positive int).
            num_candidates: how many retrieved movies to re-rank (a positive int; k if larger).
            exclude_seen: drop movies the user rated in the training split.
            min_ratings: drop movies with fewer training ratings than this (an int >= 0).
            rerank_weight: how much the predicted rating counts in the final order:
                ``retrieval_score / temperature + rerank_weight * predicted_rating``. 0 keeps
                the retrieval order; a large value orders by predicted rating alone. None uses
                :data:`~tfrs_movies.recommend.rescoring.DEFAULT_RERANK_WEIGHT`.

        Returns:
            A list of :class:`Recommendation` for one user id, or a list of such lists.

        Raises:
            KeyError: an unknown user id (use :meth:`recommend_for_ratings` for new users).
            ValueError: a user id that is not a str or int (e.g. None); k, num_candidates,
                min_ratings or rerank_weight of the wrong type or out of range.
        """
        k = inputs.count(k, "k")
        weight = rescoring.rerank_weight(rerank_weight)
        single = isinstance(user_ids, str | bytes) or not isinstance(user_ids, Iterable)
        rescored = self.rescored_candidates(
            [user_ids] if single else user_ids,
            max(k, inputs.count(num_candidates, "num_candidates")),
            exclude_seen,
            min_ratings,
        )
        return self._records(rescored, k, weight, single)

    def rescored_candidates(
        self,
        user_ids: Iterable[str | int],
        num_candidates: int = 100,
        exclude_seen: bool = True,
        min_ratings: int = 0,
    ) -> RescoredCandidates:
        """Known users' candidates, filtered and re-scored, before the final order.

        What :meth:`recommend` orders: call
        ``RescoredCandidates.top_rows(k, rerank_weight, self.temperature)`` to order them for
        several re-rank weights without retrieving again.

        Args:
            user_ids: user ids (str or int).
            num_candidates, exclude_seen, min_ratings: as in :meth:`recommend`.

        Returns:
            The :class:`~tfrs_movies.recommend.candidates.RescoredCandidates` of the users, in
            order (at most ``num_candidates`` each).

        Raises:
            KeyError: an unknown user id. ValueError: a user id that is not a str or int;
                num_candidates or min_ratings of the wrong type or out of range.
        """
        num_candidates = inputs.count(num_candidates, "num_candidates")
        min_ratings = inputs.count(min_ratings, "min_ratings", minimum=0)
        keys = [inputs.identifier(u, "user id") for u in user_ids]
        rows = np.array([self.catalogue.user_row(key) for key in keys], np.int64)
        if not keys:
            empty = np.zeros((0, 0), np.float32)
            return RescoredCandidates(empty.astype(np.int64), empty, empty, rows)
        scores, movie_rows = self._index_rows(tf.constant(keys))
        candidate_rows, candidate_scores = select_candidates(
            movie_rows.numpy(),
            scores.numpy(),
            num_candidates,
            [self.seen_rows(row) if exclude_seen else None for row in rows],
            self.num_ratings,
            min_ratings,
            self.movie_vectors,
            lambda i: self._query_vector(rows[i]),
        )
        return RescoredCandidates.from_lists(
            candidate_rows,
            candidate_scores,
            lambda candidates: self.rescorer.known(rows, candidates),
        )

    def _query_vector(self, user_row: int) -> np.ndarray:
        """(dim,) the user tower's output for a known user."""
        if self.rescorer.user_vectors is not None:
            return self.rescorer.user_vectors[user_row]
        user = tf.constant([str(self.user_ids[user_row])])
        return self.retrieval_index.query_vectors(user).numpy()[0]

    def _finish(
        self,
        candidate_rows: list[np.ndarray],
        candidate_scores: list[np.ndarray],
        k: int,
        rerank_weight: float,
        single: bool,
        score_fn: Callable[[np.ndarray], np.ndarray],
        movie_prior: np.ndarray | None = None,
    ):
        """Re-ranks each query's candidates with one batched ranking call; builds records.

        ``score_fn`` maps (Q, C) candidate movie rows (padded with row 0) to (Q, C) predicted
        ratings; ``movie_prior`` (M,) is added to the order by movie row (see
        :meth:`RescoredCandidates.best`).
        """
        rescored = RescoredCandidates.from_lists(candidate_rows, candidate_scores, score_fn)
        return self._records(rescored, k, rerank_weight, single, movie_prior)

    def _records(
        self,
        rescored: RescoredCandidates,
        k: int,
        rerank_weight: float,
        single: bool,
        movie_prior: np.ndarray | None = None,
    ):
        """The best ``k`` of each query's re-scored candidates as records (one list per query,
        or the only list when ``single``)."""
        positions = rescored.best(k, rerank_weight, self.temperature, movie_prior)
        results = []
        for i, length in enumerate(rescored.lengths):
            taken = positions[i, : min(k, length)]
            results.append(
                records(
                    self.catalogue,
                    rescored.movie_rows[i, taken],
                    rescored.retrieval_scores[i, taken],
                    rescored.predicted_ratings[i, taken],
                )
            )
        return results[0] if single else results

    # ----------------------------------------------------------------------------- similar
    def similar_movies(self, movie: str | int, k: int = 10) -> list[Recommendation]:
        """The k movies whose embeddings are closest (cosine) to the given movie's.

        Args:
            movie: a movie id or an exact title.
            k: how many (fewer if the catalogue is smaller).

        Raises:
            KeyError: unknown or ambiguous movie. ValueError: ``movie`` neither a str nor an
                int (e.g. None); k not a positive int.
        """
        k = inputs.count(k, "k")
        row = self.movie_row(movie)
        similarity = self._unit_vectors @ self._unit_vectors[row]
        similarity[row] = -np.inf
        count = min(k, len(similarity) - 1)
        if count <= 0:
            return []
        top = np.argpartition(-similarity, count - 1)[:count]
        top = top[np.argsort(-similarity[top], kind="stable")]
        return records(self.catalogue, top, similarity[top], None)

    # ----------------------------------------------------------------------------- new users
    def user_vector(self, ratings: Mapping[str | int, float]) -> np.ndarray:
        """Folds a new user into the trained model: the query vector that explains their movies.

        The movie vectors stay fixed; the user vector minimizes the same catalogue softmax the
        retrieval task trained with (each rated movie a positive, weighted by its rating: 2 stars
        or less count 5%, 4 stars or more fully) plus an L2 penalty (see
        :mod:`~tfrs_movies.fold_in_graph`). The last coordinate stays 1 (the bias
        coordinate). Computed by the run's ``retrieval_index.fold_in`` signature, or in numpy
        for runs exported before it existed (format 1).

        Args:
            ratings: ``{movie id or exact title: rating}``; at least one.

        Returns:
            (dim,) float32 query vector.

        Raises:
            ValueError: see :meth:`recommend_for_ratings`. KeyError: unknown movie.
        """
        return self._fold_in(*inputs.person_ratings(self.catalogue, ratings))

    def _fold_in(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(dim,) float32 query vector of one person's rated movie rows (n,) and ratings (n,)."""
        return self._fold_in_many(*inputs.padded_people([(rows, values)]))[0]

    def _fold_in_many(self, rows: np.ndarray, ratings: np.ndarray, given: np.ndarray) -> np.ndarray:
        """(B, dim) float32 query vectors of B people, in one call of the exported fold-in,
        from their (B, N) rated movie rows, ratings and mask (:func:`inputs.padded_people`;
        the fold-in ignores the padding, given to it as "")."""
        if self.exported_fold_in is None:
            people = zip(rows, ratings, given, strict=True)
            return np.stack([self._numpy_fold_in(r[g], v[g]) for r, v, g in people])
        movie_ids = np.where(given, self.movie_ids[rows].astype(str), "")
        vectors, _ = self.exported_fold_in(tf.constant(movie_ids), tf.constant(ratings))
        return vectors.numpy()

    def recommend_for_ratings(
        self,
        ratings: Mapping[str | int, float],
        k: int = 10,
        num_candidates: int = 100,
        min_ratings: int = 0,
        rerank_weight: float | None = None,
        popularity_weight: float | None = None,
    ) -> list[Recommendation]:
        """Recommendations for a person who was not in training, from a few of their ratings.

        The final order is ``retrieval_score / temperature + rerank_weight * predicted_rating
        + popularity_weight * log(1 + the movie's training ratings)`` (see
        :data:`~tfrs_movies.recommend.rescoring.NEW_PERSON_POPULARITY_WEIGHT`).

        Args:
            ratings: ``{movie id or exact title: rating}``; the rated movies are never returned.
                Ratings are real numbers (not bools or strings) within 0.5-5; each movie once
                (an id and the title of the same movie count twice).
            k, num_candidates, min_ratings: as in :meth:`recommend`.
            rerank_weight: as in :meth:`recommend`; None uses
                :data:`~tfrs_movies.recommend.rescoring.NEW_PERSON_RERANK_WEIGHT`.
            popularity_weight: weight of the popularity prior; None uses
                :data:`~tfrs_movies.recommend.rescoring.NEW_PERSON_POPULARITY_WEIGHT`; 0 (with
                ``rerank_weight`` 0.25) orders as :meth:`recommend` does.

        Raises:
            ValueError: empty ratings, a bad rating value, a movie given twice, a movie key
                that is not a str or int, or bad k, num_candidates, min_ratings,
                rerank_weight or popularity_weight. KeyError: unknown movie.
        """
        return self.recommend_for_ratings_many(
            [ratings], k, num_candidates, min_ratings, rerank_weight, popularity_weight
        )[0]

    def recommend_for_ratings_many(
        self,
        people: Sequence[Mapping[str | int, float]],
        k: int = 10,
        num_candidates: int = 100,
        min_ratings: int = 0,
        rerank_weight: float | None = None,
        popularity_weight: float | None = None,
    ) -> list[list[Recommendation]]:
        """:meth:`recommend_for_ratings` for several people at once, each folded in, searched
        and re-scored in one batched call: cheaper per person than one call each (the fold-in
        reads the catalogue once a Newton step for the whole batch).

        A person's list is the one :meth:`recommend_for_ratings` gives them alone: the batched
        products round differently in the last bits, so the fold-in stops at a point within
        its tolerance of the same minimum and scores agree to ~1e-4 (measured on ml-100k: the
        same lists, in the same order, for 1,200 of 1,200 people of 2-5 ratings in batches
        of 2, 4 and 8); only movies whose scores tie that closely could swap places.

        Args:
            people: each person's ``{movie id or exact title: rating}``, as in
                :meth:`recommend_for_ratings`.
            k, num_candidates, min_ratings, rerank_weight, popularity_weight: as in
                :meth:`recommend_for_ratings`, the same for everyone.

        Returns:
            One list of :class:`Recommendation` per person, in order.

        Raises:
            ValueError, KeyError: as :meth:`recommend_for_ratings`, for the first person whose
                ratings are bad (nobody gets an answer then).
        """
        k = inputs.count(k, "k")
        num_candidates = inputs.count(num_candidates, "num_candidates")
        min_ratings = inputs.count(min_ratings, "min_ratings", minimum=0)
        weight = rescoring.rerank_weight(rerank_weight, rescoring.NEW_PERSON_RERANK_WEIGHT)
        popularity = rescoring.rerank_weight(
            popularity_weight, rescoring.NEW_PERSON_POPULARITY_WEIGHT, "popularity_weight"
        )
        rated = [inputs.person_ratings(self.catalogue, ratings) for ratings in people]
        if not rated:
            return []
        histories = inputs.padded_people(rated)
        vectors = self._fold_in_many(*histories)
        scores, movie_rows = self._index_search_rows(tf.constant(vectors))
        candidate_rows, candidate_scores = select_candidates(
            movie_rows.numpy(),
            scores.numpy(),
            max(k, num_candidates),
            [rows for rows, _ in rated],
            self.num_ratings,
            min_ratings,
            self.movie_vectors,
            lambda i: vectors[i],
        )

        def score(candidates: np.ndarray) -> np.ndarray:
            return self.rescorer.people(vectors, candidates, *histories)

        prior = popularity * self._log_popularity if popularity else None
        return self._finish(candidate_rows, candidate_scores, k, weight, False, score, prior)
