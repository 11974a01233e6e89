"""Candidates for re-ranking: the index's answer, filtered, with an exact fallback.

The ScaNN index returns a fixed number of movies per query. Movies a person already rated and
movies with too few training ratings are dropped from that answer; when too few survive, the
query's candidates come from exact search over the whole catalogue instead, so filtering never
shortens a list that the catalogue could fill. :class:`RescoredCandidates` holds the survivors
of many queries with their predicted ratings and orders them for any re-rank weight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

# Largest (queries x movies) boolean mask built for the seen-movie filter (64 MB).
_DENSE_MASK_LIMIT = 64_000_000


def select_candidates(
    index_rows: np.ndarray,
    index_scores: np.ndarray,
    wanted: int,
    excluded: Sequence[np.ndarray | None],
    num_ratings: np.ndarray,
    min_ratings: int,
    movie_vectors: np.ndarray,
    query_vector: Callable[[int], np.ndarray],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query: the candidates that pass the filters, best first, at most ``wanted``.

    Args:
        index_rows, index_scores: (Q, K) the index's answer (movie rows and scores; padding has
            a non-finite score).
        wanted: how many candidates to keep per query.
        excluded: per query, movie rows to drop (or None).
        num_ratings: (M,) training ratings per movie row.
        min_ratings: drop movies with fewer training ratings.
        movie_vectors: (M, dim) movie vectors, for the exact fallback.
        query_vector: ``i -> (dim,)`` query vector of query i, for the exact fallback.

    Returns:
        (rows, scores): per query, int64 movie rows (n,) and their retrieval scores (n,).
    """
    movie_rows = index_rows.astype(np.int64)
    # ScaNN pads a batch's answers to the longest one: a query that found fewer movies
    # gets NaN scores (and the first movie's id) in its last columns.
    found = np.isfinite(index_scores)
    movie_rows = np.where(found, movie_rows, 0)
    keep = keep_mask(movie_rows, excluded, num_ratings, min_ratings) & found
    # Position of each kept candidate among its query's kept ones; keep the first `wanted`.
    rank = np.cumsum(keep, axis=1)
    keep &= rank <= wanted
    counts = keep.sum(axis=1)
    all_rows = np.split(movie_rows[keep], np.cumsum(counts)[:-1])
    all_scores = np.split(index_scores[keep], np.cumsum(counts)[:-1])
    if movie_rows.shape[1] < len(num_ratings):
        for i in np.flatnonzero(counts < wanted):
            # The index's answer ran out after filtering: exact search over the catalogue.
            query_scores = movie_vectors @ query_vector(i)
            order = np.argsort(-query_scores, kind="stable")
            mask = keep_mask(order[None, :], excluded[i : i + 1], num_ratings, min_ratings)[0]
            all_rows[i] = order[mask][:wanted]
            all_scores[i] = query_scores[order][mask][:wanted]
    return all_rows, all_scores


def keep_mask(
    movie_rows: np.ndarray,
    excluded: Sequence[np.ndarray | None],
    num_ratings: np.ndarray,
    min_ratings: int,
) -> np.ndarray:
    """(Q, K) bool: candidates that are neither excluded for their query nor too rarely rated.

    Args:
        movie_rows: (Q, K) int movie rows.
        excluded: per query (Q of them), movie rows to drop (or None).
        num_ratings: (M,) training ratings per movie row.
        min_ratings: drop movies with fewer training ratings.
    """
    keep = np.ones(movie_rows.shape, bool)
    sizes = [0 if drop is None else len(drop) for drop in excluded]
    if sum(sizes):
        query_of_drop = np.repeat(np.arange(len(excluded)), sizes)
        drops = np.concatenate([d for d in excluded if d is not None and len(d)])
        n = len(num_ratings)
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
        keep &= num_ratings[movie_rows] >= min_ratings
    return keep


@dataclasses.dataclass(frozen=True)
class RescoredCandidates:
    """The candidates of Q queries with their predicted ratings, padded to C columns.

    Attributes:
        movie_rows: (Q, C) int64 movie rows, best retrieval score first; 0 past ``lengths``.
        retrieval_scores: (Q, C) float32 retrieval scores; -inf past ``lengths``.
        predicted_ratings: (Q, C) predicted ratings; 0 past ``lengths``.
        lengths: (Q,) int64 number of real candidates per query.
    """

    movie_rows: np.ndarray
    retrieval_scores: np.ndarray
    predicted_ratings: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_lists(
        cls,
        candidate_rows: Sequence[np.ndarray],
        candidate_scores: Sequence[np.ndarray],
        score_fn: Callable[[np.ndarray], np.ndarray],
    ) -> RescoredCandidates:
        """Pads per-query candidates (as :func:`select_candidates` returns them) and scores them.

        Args:
            candidate_rows, candidate_scores: per query, (n,) movie rows and retrieval scores.
            score_fn: maps (Q, C) movie rows (padded with row 0) to (Q, C) predicted ratings;
                not called when no query has a candidate.
        """
        lengths = np.fromiter((len(r) for r in candidate_rows), np.int64, len(candidate_rows))
        width = int(lengths.max(initial=0))
        valid = np.arange(width)[None, :] < lengths[:, None]
        movie_rows = np.zeros((len(lengths), width), np.int64)
        scores = np.full((len(lengths), width), -np.inf, np.float32)
        if width:
            movie_rows[valid] = np.concatenate(candidate_rows)
            scores[valid] = np.concatenate(candidate_scores)
            predicted = np.where(valid, score_fn(movie_rows), 0)
        else:
            predicted = np.zeros((len(lengths), 0), np.float32)
        return cls(movie_rows, scores, predicted, lengths)

    def best(
        self,
        k: int,
        rerank_weight: float,
        temperature: float,
        movie_prior: np.ndarray | None = None,
    ) -> np.ndarray:
        """(Q, min(k, C)) column positions of each query's best ``k`` candidates, best first.

        The order is ``retrieval_score / temperature + rerank_weight * predicted_rating``
        (``+ movie_prior[movie row]`` when given), ties kept in retrieval order. A query with
        fewer than ``k`` candidates has its padding columns (positions >= its length) last.
        """
        blended = self.retrieval_scores / temperature + rerank_weight * self.predicted_ratings
        if movie_prior is not None:
            blended = blended + movie_prior[self.movie_rows]
        # Padding's -inf retrieval score keeps it last whatever the weight.
        return np.argsort(-blended, axis=1, kind="stable")[:, :k]

    def top_rows(self, k: int, rerank_weight: float, temperature: float) -> np.ndarray:
        """(Q, k) movie rows of :meth:`best`, -1 where a query has fewer than ``k``."""
        positions = self.best(k, rerank_weight, temperature)
        top = np.full((len(self.lengths), k), -1, np.int64)
        real = positions < self.lengths[:, None]
        top[:, : positions.shape[1]] = np.where(
            real, np.take_along_axis(self.movie_rows, positions, 1), -1
        )
        return top
