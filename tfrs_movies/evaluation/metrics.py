"""Top-N ranking metrics and rating metrics, one implementation of each.

Everything works in the index space of a :class:`~tfrs_movies.data.schema.Ratings`: a user is a
row of ``ratings.user_ids`` and a movie a row of ``ratings.movie_ids``. Train and test splits made
with :meth:`Ratings.subset` share those tables, so rows mean the same thing in both.

Top-N protocol (see ``DESIGN.md``, "Evaluation protocol"): every user with at least one test rating
is evaluated; a scorer gives a score to every movie of the table; the user's training movies are
removed from the ranking (``exclude_seen``); every test rating of the user is relevant, whatever
its star value (binary relevance). For a user with relevant set R and ranked list L:

* ``recall@k``    = |L[:k] ∩ R| / |R| (the standard definition; it cannot reach 1 when |R| > k),
* ``precision@k`` = |L[:k] ∩ R| / k,
* ``ndcg@k``      = DCG / IDCG with DCG = Σ_{i<k, L[i] ∈ R} 1 / log2(i + 2) and IDCG the DCG of
  min(|R|, k) hits at the top,
* ``map@k``       = Σ_{i<k, L[i] ∈ R} precision@(i+1) / min(|R|, k),

each averaged over users; ``coverage@k`` is the fraction of all movies of the table that appear
in at least one evaluated user's top k. There is exactly one implementation of each metric,
:func:`per_user_topn` (each user's values, for paired comparisons), which
:func:`topn_metrics_from_lists` averages; :func:`topn_metrics` ranks with a score function
(:func:`rank_test_users`) and calls it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from tfrs_movies.data.schema import Ratings
from tfrs_movies.evaluation.user_items import UserItems
from tfrs_movies.log import Log, silent

PROGRESS_SECONDS = 30.0  # long rankings (160k users) log a progress line this often

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps (B,) int user rows to (B, num_movies) float scores, higher is better; or to
(num_movies,) scores that every user of the batch shares (a popularity order)."""


def check_same_tables(train: Ratings, test: Ratings) -> None:
    if train.num_users != test.num_users or train.num_movies != test.num_movies:
        raise ValueError(
            "train and test must share one user and movie table (make both with "
            f"Ratings.subset); got {train.num_users} vs {test.num_users} users and "
            f"{train.num_movies} vs {test.num_movies} movies"
        )


def _check_ks(ks: Sequence[int], *others: int) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min((*ks, *others)) < 1:
        raise ValueError(f"cut-offs must be positive integers, got ks={ks} and {others}")
    return ks


def topn_metrics_from_lists(
    top_movie_rows: np.ndarray,
    user_rows: np.ndarray,
    test: Ratings | UserItems,
    *,
    ks: Sequence[int] = (10, 100),
    ndcg_k: int = 10,
    coverage_k: int = 10,
) -> dict[str, float]:
    """Top-N metrics of ranked lists that are already computed (e.g. by a retrieval index).

    Args:
        top_movie_rows: (U, K) int movie rows, best first, one row per entry of ``user_rows``.
            Entries < 0 are padding (no movie): never a hit and not counted in coverage. A list
            must not repeat a movie. Seen movies should already be removed by the caller.
        user_rows: (U,) int user rows; each must have at least one relevant movie.
        test: the held-out ratings (every test rating is relevant), or the relevant sets
            directly as a :class:`UserItems` (``topn_metrics`` passes test minus train).
        ks: cut-offs for ``recall@k`` and ``precision@k``; each must be <= K.
        ndcg_k: cut-off for ``ndcg@k`` and ``map@k``; <= K.
        coverage_k: cut-off for ``coverage@k``; <= K.

    Returns:
        ``recall@k`` and ``precision@k`` for each k in ``ks``, ``ndcg@{ndcg_k}``,
        ``map@{ndcg_k}``, ``coverage@{coverage_k}`` (all means over users, as floats), and
        ``num_users`` (int).

    Raises:
        ValueError: shapes disagree, K is smaller than a cut-off, a list repeats a movie, or a
            user has no relevant movie (its recall would be undefined).
    """
    ks = _check_ks(ks, ndcg_k, coverage_k)
    relevant = test if isinstance(test, UserItems) else UserItems.from_ratings(test)
    top, user_rows = _checked_lists(
        top_movie_rows, user_rows, relevant, max(*ks, ndcg_k, coverage_k)
    )
    per_user = _per_user(top, user_rows, relevant, ks, ndcg_k)
    out: dict[str, float] = {name: float(np.mean(values)) for name, values in per_user.items()}
    shown = top[:, :coverage_k]
    out[f"coverage@{coverage_k}"] = float(
        np.unique(shown[shown >= 0]).shape[0] / relevant.num_movies
    )
    out["num_users"] = int(user_rows.shape[0])
    return out


def per_user_topn(
    top_movie_rows: np.ndarray,
    user_rows: np.ndarray,
    test: Ratings | UserItems,
    *,
    ks: Sequence[int] = (10, 100),
    ndcg_k: int = 10,
) -> dict[str, np.ndarray]:
    """Each user's top-N metrics of ranked lists, before averaging (for paired comparisons).

    Args:
        top_movie_rows, user_rows, test, ks, ndcg_k: as :func:`topn_metrics_from_lists`.

    Returns:
        ``recall@k`` and ``precision@k`` for each k in ``ks``, ``ndcg@{ndcg_k}`` and
        ``map@{ndcg_k}``: (U,) float64 arrays in the order of ``user_rows``;
        :func:`topn_metrics_from_lists` reports their means.

    Raises:
        ValueError: as :func:`topn_metrics_from_lists`.
    """
    ks = _check_ks(ks, ndcg_k)
    relevant = test if isinstance(test, UserItems) else UserItems.from_ratings(test)
    top, user_rows = _checked_lists(top_movie_rows, user_rows, relevant, max(*ks, ndcg_k))
    return _per_user(top, user_rows, relevant, ks, ndcg_k)


def _per_user(
    top: np.ndarray,
    user_rows: np.ndarray,
    relevant: UserItems,
    ks: tuple[int, ...],
    ndcg_k: int,
) -> dict[str, np.ndarray]:
    """:func:`per_user_topn` of lists that passed :func:`_checked_lists`."""
    num_relevant = relevant.counts()[user_rows]
    hits = relevant.contains(user_rows[:, None], top)  # (U, depth) bool
    hits_cum = np.cumsum(hits, axis=1)  # hits_cum[:, i] = hits in the top i + 1
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = hits_cum[:, k - 1] / num_relevant
    for k in ks:
        out[f"precision@{k}"] = hits_cum[:, k - 1] / k
    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    dcg = hits[:, :ndcg_k] @ discounts
    # Binary relevance: the ideal list puts min(|R|, k) relevant movies first.
    ideal_hits = np.minimum(num_relevant, ndcg_k)
    idcg = np.cumsum(discounts)[ideal_hits - 1]
    out[f"ndcg@{ndcg_k}"] = dcg / idcg
    precision_at_rank = hits_cum[:, :ndcg_k] / np.arange(1, ndcg_k + 1)
    out[f"map@{ndcg_k}"] = (precision_at_rank * hits[:, :ndcg_k]).sum(axis=1) / ideal_hits
    return out


def _checked_lists(
    top_movie_rows: np.ndarray, user_rows: np.ndarray, relevant: UserItems, needed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(top[:, :needed] as int64, user_rows as int64)`` after the checks every metric needs."""
    top = np.asarray(top_movie_rows, dtype=np.int64)
    user_rows = np.asarray(user_rows, dtype=np.int64)
    if top.ndim != 2 or user_rows.ndim != 1 or top.shape[0] != user_rows.shape[0]:
        raise ValueError(
            f"top_movie_rows must be (U, K) and user_rows (U,); got {top.shape} and "
            f"{user_rows.shape}"
        )
    if top.shape[1] < needed:
        raise ValueError(f"lists have {top.shape[1]} movies but cut-off {needed} was asked for")
    top = top[:, :needed]
    if np.any(top >= relevant.num_movies):
        raise ValueError(f"movie rows must be < num_movies={relevant.num_movies}")
    ordered = np.sort(top, axis=1)
    if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)):
        raise ValueError("a ranked list repeats a movie; recall would count it twice")
    num_relevant = relevant.counts()[user_rows]
    if np.any(num_relevant == 0):
        missing = user_rows[num_relevant == 0][:5].tolist()
        raise ValueError(
            f"users without relevant movies cannot be evaluated (e.g. rows {missing}); pass "
            "only users with test ratings, e.g. UserItems.from_ratings(test).nonempty_rows()"
        )
    if user_rows.shape[0] == 0:
        raise ValueError("no users to evaluate")
    return top, user_rows


def _top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Returns (B, k) int64 column indices of the k highest scores per row, best first.

    The order is fully specified: score descending, ties by movie row ascending, including ties
    at the cut-off (a plain argpartition would pick arbitrary members of a tie there, which
    moves Recall@100 of popularity, with its many equal counts, in the third decimal). Columns
    scored -inf (excluded) come back as -1 so they can never count as hits.
    """
    num_rows, num_movies = scores.shape
    k_eff = min(k, num_movies)
    if k_eff < num_movies:
        # O(M) per row: the k-th largest score, then everything above it plus the
        # lowest-numbered movies tied with it.
        threshold = -np.partition(-scores, k_eff - 1, axis=1)[:, k_eff - 1 : k_eff]
        above = scores > threshold
        tied = scores == threshold
        chosen = above | tied
        room = k_eff - above.sum(axis=1)
        crowded = np.flatnonzero(tied.sum(axis=1) > room)
        if crowded.shape[0]:
            # Only rows with more tied movies than free places need the (costly) cumsum.
            keep = np.cumsum(tied[crowded], axis=1, dtype=np.int32) <= room[crowded, None]
            chosen[crowded] = above[crowded] | (tied[crowded] & keep)
        # nonzero walks row-major, so each row contributes exactly k_eff columns in order.
        part = np.nonzero(chosen)[1].reshape(num_rows, k_eff)
    else:
        part = np.broadcast_to(np.arange(num_movies), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    top = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top[np.take_along_axis(part_scores, order, axis=1) == -np.inf] = -1
    if k_eff < k:
        top = np.concatenate([top, np.full((num_rows, k - k_eff), -1, np.int64)], axis=1)
    return top


def _shared_top_k_rows(
    scores: np.ndarray, user_rows: np.ndarray, seen: UserItems | None, k: int
) -> np.ndarray:
    """As :func:`_top_k_rows` for (B,) users who share one (num_movies,) score row.

    The row is ordered once; a user's list is the first ``k`` movies of that order that they
    have not seen, which lie among the first ``k`` + (their seen count) of it. Ranking each
    user's copy of the row instead cost 190 s for 162k users x 62k movies here: ``np.partition``
    was ten times slower on identical rows than on a model's scores.
    """
    if np.isnan(scores).any():
        raise ValueError("score_fn returned NaN scores (diverged model?)")
    order = np.lexsort((np.arange(scores.shape[0]), -scores))
    order = order[scores[order] > -np.inf]
    most_seen = int(seen.counts()[user_rows].max(initial=0)) if seen is not None else 0
    head = order[: k + most_seen]
    keep = np.ones((user_rows.shape[0], head.shape[0]), bool)
    if seen is not None:
        keep &= ~seen.contains(user_rows[:, None], head[None, :])
    rank = np.cumsum(keep, axis=1)
    keep &= rank <= k
    top = np.full((user_rows.shape[0], k), -1, np.int64)
    users, positions = np.nonzero(keep)
    top[users, rank[users, positions] - 1] = head[positions]
    return top


def topn_metrics(
    score_fn: ScoreFn,
    train: Ratings,
    test: Ratings,
    ks: Sequence[int] = (10, 100),
    ndcg_k: int = 10,
    exclude_seen: bool = True,
    batch_users: int = 512,
    coverage_k: int = 10,
    log: Log = silent,
) -> dict[str, float]:
    """Ranks all movies for every test user with ``score_fn`` and computes top-N metrics.

    Args:
        score_fn: maps (B,) int user rows to (B, train.num_movies) float scores over every movie
            of the table, or to (train.num_movies,) scores shared by all B users; higher is
            better; -inf means "never recommend". NaN is an error.
        train: training ratings; their movies are removed from each user's ranking when
            ``exclude_seen``.
        test: held-out ratings over the same tables; every test rating is relevant.
        ks: cut-offs for recall@k and precision@k.
        ndcg_k: cut-off for ndcg@k and map@k.
        exclude_seen: remove each user's training movies from the ranking. Relevant sets then
            also drop any (user, movie) pair present in train, which only happens when the data
            holds repeated ratings.
        batch_users: users scored per ``score_fn`` call (bounds memory at
            batch_users x num_movies floats).
        coverage_k: cut-off for coverage@k.
        log: receives a progress line every :data:`PROGRESS_SECONDS` (users ranked, ETA).

    Returns:
        The dict of :func:`topn_metrics_from_lists` over all users with a relevant test movie.
    """
    ks = _check_ks(ks, ndcg_k, coverage_k)
    ranked = rank_test_users(
        score_fn, train, test, max(*ks, ndcg_k, coverage_k), exclude_seen, batch_users, log
    )
    return topn_metrics_from_lists(*ranked, ks=ks, ndcg_k=ndcg_k, coverage_k=coverage_k)


def rank_test_users(
    score_fn: ScoreFn,
    train: Ratings,
    test: Ratings,
    depth: int,
    exclude_seen: bool = True,
    batch_users: int = 512,
    log: Log = silent,
) -> tuple[np.ndarray, np.ndarray, UserItems]:
    """The top ``depth`` movies of every user with a relevant test movie, as
    :func:`topn_metrics` ranks them (its arguments have the same meaning).

    Returns:
        ``(top_movie_rows (U, depth) int32, user_rows (U,), relevant)``: the arguments of
        :func:`topn_metrics_from_lists` and :func:`per_user_topn`; ``relevant`` is the test
        sets minus the training movies when ``exclude_seen``.

    Raises:
        ValueError: different tables, or ``score_fn`` returned a wrong shape or NaN.
    """
    check_same_tables(train, test)
    num_movies = train.num_movies
    relevant = UserItems.from_ratings(test)
    seen = UserItems.from_ratings(train)
    if exclude_seen:
        relevant = relevant.difference(seen)
    user_rows = relevant.nonempty_rows()
    top = np.empty((user_rows.shape[0], depth), dtype=np.int32)
    started = shown = time.perf_counter()
    for start in range(0, user_rows.shape[0], batch_users):
        if time.perf_counter() - shown >= PROGRESS_SECONDS:
            shown = time.perf_counter()
            left = (shown - started) / start * (user_rows.shape[0] - start)
            log(
                f"ranked {start:,}/{user_rows.shape[0]:,} users "
                f"({100 * start // user_rows.shape[0]}%)  ETA {left:.0f}s"
            )
        batch = user_rows[start : start + batch_users]
        raw = np.asarray(score_fn(batch))
        if raw.shape == (num_movies,):
            top[start : start + batch.shape[0]] = _shared_top_k_rows(
                raw, batch, seen if exclude_seen else None, depth
            )
            continue
        if raw.shape != (batch.shape[0], num_movies):
            raise ValueError(
                f"score_fn returned shape {raw.shape}, expected ({batch.shape[0]}, {num_movies}) "
                f"or ({num_movies},)"
            )
        # A copy in a float dtype: we write -inf into it and callers may return shared arrays.
        scores = np.array(raw, dtype=np.result_type(raw.dtype, np.float32))
        if np.isnan(scores).any():
            raise ValueError("score_fn returned NaN scores (diverged model?)")
        if exclude_seen:
            positions, movie_rows = seen.gather(batch)
            scores[positions, movie_rows] = -np.inf
        top[start : start + batch.shape[0]] = _top_k_rows(scores, depth)
    return top, user_rows, relevant


def rating_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Root mean squared error and mean absolute error of rating predictions.

    Args:
        predicted: (R,) predicted ratings.
        actual: (R,) true ratings.

    Returns:
        ``{"rmse": ..., "mae": ...}`` as floats.
    """
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    if predicted.shape != actual.shape or predicted.shape[0] == 0:
        raise ValueError(
            f"need equally long, non-empty arrays; got {predicted.shape} and {actual.shape}"
        )
    error = predicted - actual
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}
