"""The Recommender benchmark: ``recommend()`` latency and throughput, beside exact retrieval.

``Recommender`` (ScaNN candidates) and :class:`ExactNumpyRecommender` are loaded from the same
run directory and measured in the same process, with per-stage timings and cProfile output.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1; must load before TensorFlow)

# isort: split
import tensorflow as tf
from common import latency_summary, median_ms, profile_call

from tfrs_movies.log import Log, print_line
from tfrs_movies.recommend import Recommendation, Recommender, rescoring
from tfrs_movies.recommend import inputs as checks
from tfrs_movies.recommend.candidates import select_candidates


class ExactNumpyRecommender(Recommender):
    """A Recommender that retrieves by exact numpy scoring instead of the ScaNN index.

    One ``query_vectors`` call for the batch, ``queries @ movie_vectors.T``, seen movies set to
    -inf through a CSR scatter, ``argpartition`` for the top ``num_candidates``: no string ids
    on the retrieval side at all. For catalogues of a few tens of thousands of movies this is
    exact and cheaper than ScaNN's answer of ``index.k`` movies per user (the index stays the
    path for large catalogues). ``min_ratings`` is applied as a -inf mask too.
    """

    def recommend(
        self,
        user_ids: str | int | Iterable[str | int],
        k: int = 10,
        num_candidates: int = 100,
        exclude_seen: bool = True,
        min_ratings: int = 0,
        rerank_weight: float | None = None,
    ) -> list[Recommendation] | list[list[Recommendation]]:
        """As :meth:`Recommender.recommend`, with exact candidates."""
        k = checks.count(k, "k")
        num_candidates = checks.count(num_candidates, "num_candidates")
        min_ratings = checks.count(min_ratings, "min_ratings", minimum=0)
        weight = rescoring.rerank_weight(rerank_weight)
        single = isinstance(user_ids, str | int | np.integer)
        users = [str(user_ids)] if single else [str(u) for u in user_ids]
        rows = np.fromiter((self.catalogue.users.row(u) for u in users), np.int64, len(users))
        queries = self.retrieval_index.query_vectors(tf.constant(users)).numpy()
        scores = queries @ self.movie_vectors.T
        if exclude_seen:
            starts, stops = self.seen_indptr[rows], self.seen_indptr[rows + 1]
            lengths = stops - starts
            which = np.repeat(np.arange(len(rows)), lengths)
            offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            scores[which, self.seen_movies[np.repeat(starts, lengths) + offsets]] = -np.inf
        if min_ratings > 0:
            scores[:, self.num_ratings < min_ratings] = -np.inf
        wanted = min(max(k, num_candidates), scores.shape[1])
        top = np.argpartition(-scores, wanted - 1, axis=1)[:, :wanted]
        top_scores = np.take_along_axis(scores, top, 1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        top_scores = np.take_along_axis(top_scores, order, 1)
        finite = np.isfinite(top_scores)
        candidate_rows = [t[f] for t, f in zip(top, finite, strict=True)]
        candidate_scores = [t[f] for t, f in zip(top_scores, finite, strict=True)]
        return self._finish(
            candidate_rows,
            candidate_scores,
            k,
            weight,
            single,
            lambda candidates: self.rescorer.known(rows, candidates),
        )


def _measure_recommender(
    recommender: Recommender,
    users: np.ndarray,
    requests: int,
    batch: int,
    batch_rounds: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Single-user latency percentiles (after 20 warm-up calls) and batched users/s."""
    singles = rng.choice(users, requests)
    for user in singles[:20]:
        recommender.recommend(user)
    latencies = []
    for user in singles:
        started = time.perf_counter()
        recommender.recommend(user)
        latencies.append(time.perf_counter() - started)
    batches = [rng.choice(users, batch) for _ in range(batch_rounds)]
    recommender.recommend(batches[0])
    started = time.perf_counter()
    for users_batch in batches:
        recommender.recommend(users_batch)
    seconds = time.perf_counter() - started
    return {**latency_summary(latencies), f"users/s (b={batch})": batch * batch_rounds / seconds}


def _stage_timings(
    baseline: Recommender, exact: ExactNumpyRecommender, batch: int, rng: np.random.Generator
) -> dict[str, float]:
    """Median milliseconds of each stage of one request and of one batch of ``batch`` users."""
    users = baseline.user_ids
    one = tf.constant([users[0]])
    ids = baseline.retrieval_index(one)[1].numpy()
    candidates = tf.constant(baseline.movie_ids[:100].astype(str)[None, :])
    stage_calls = {
        "retrieval_index(1 user)": lambda: baseline.retrieval_index(one),
        "ranking score_candidates(1x100)": lambda: baseline.ranking_model.score_candidates(
            one, candidates
        ),
        "rescorer.known(1x100), the numpy head": lambda: baseline.rescorer.known(
            np.zeros(1, np.int64), np.arange(100)[None, :]
        ),
        f"ids.astype(str) + vocabulary row lookups (1x{ids.shape[1]})": lambda: [
            baseline.catalogue.movies.row(m) for m in ids[0].astype(str)
        ],
        "recommend(1 user) total (ScaNN)": lambda: baseline.recommend(users[0]),
        "recommend(1 user) total (exact numpy)": lambda: exact.recommend(users[0]),
    }
    stages = {name: median_ms(call, 20, 300) for name, call in stage_calls.items()}
    big = rng.choice(users, batch)
    big_tensor = tf.constant(big.astype(str))
    scores, big_rows = baseline.retrieval_index.rows(big_tensor)
    big_candidate_rows = rng.integers(0, len(baseline.movie_ids), (batch, 100))
    big_candidates = tf.constant(baseline.movie_ids[big_candidate_rows].astype(str))
    big_user_rows = np.array([baseline.catalogue.users.row(u) for u in big])
    seen = [baseline.seen_rows(row) for row in big_user_rows]

    def query_vector(i: int) -> np.ndarray:
        return baseline.retrieval_index.query_vectors(tf.constant([big[i]])).numpy()[0]

    fallbacks = sum(
        int((~np.isin(retrieved, mine)).sum() < 100)
        for retrieved, mine in zip(big_rows.numpy(), seen, strict=True)
    )
    stages[f"(users of the {batch} needing the exact fallback: {fallbacks})"] = 0.0
    batch_calls = {
        f"retrieval_index.rows({batch} users)": lambda: baseline.retrieval_index.rows(big_tensor),
        f"ranking score_candidates({batch}x100)": lambda: baseline.ranking_model.score_candidates(
            big_tensor, big_candidates
        ),
        f"rescorer.known({batch}x100), the numpy head": lambda: baseline.rescorer.known(
            big_user_rows, big_candidate_rows
        ),
        f"select_candidates ({batch} users)": lambda: select_candidates(
            big_rows.numpy(),
            scores.numpy(),
            100,
            seen,
            baseline.num_ratings,
            0,
            baseline.movie_vectors,
            query_vector,
        ),
        f"recommend({batch} users) ScaNN": lambda: baseline.recommend(big),
        f"recommend({batch} users) exact numpy": lambda: exact.recommend(big),
    }
    stages.update({name: median_ms(call, 1, 3) for name, call in batch_calls.items()})
    return stages


def run_serving_benchmark(
    run_dir: str | Path,
    requests: int = 500,
    batch: int = 1000,
    batch_rounds: int = 5,
    seed: int = 0,
    profile: bool = True,
    log: Log = print_line,
) -> dict[str, Any]:
    """Single-user latency and batched throughput of ``recommend()``, beside exact retrieval.

    Args:
        run_dir: a finished run directory.
        requests: single-user requests timed.
        batch: users per batched request.
        batch_rounds: batched requests timed.
        seed: seeds the choice of users.
        profile: also return cProfile output of a batch and of 200 single requests.
        log: receives progress lines.

    Returns:
        ``{"rows": table rows, "stages": per-stage median ms, "profiles": {name: cProfile
        text}, "exact_overlap": mean top-10 overlap of exact and ScaNN answers, "load_seconds",
        "num_users", "num_movies"}``.
    """
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    baseline = Recommender.load(run_dir)
    load_seconds = time.perf_counter() - started
    exact = ExactNumpyRecommender.load(run_dir)
    users = baseline.user_ids
    check = rng.choice(users, 300)
    exact_overlap = float(
        np.mean(
            [
                len({r.movie_id for r in a} & {r.movie_id for r in b}) / max(1, len(a))
                for a, b in zip(baseline.recommend(check), exact.recommend(check), strict=True)
            ]
        )
    )
    rows = []
    for name, recommender in (
        ("Recommender (ScaNN)", baseline),
        ("exact numpy retrieval", exact),
    ):
        log(f"measuring {name} ...")
        measured = _measure_recommender(
            recommender, users, requests, batch, batch_rounds, np.random.default_rng(seed)
        )
        rows.append({"recommender": name, **measured})
    stages = _stage_timings(baseline, exact, batch, rng)
    profiles = {}
    if profile:
        big = rng.choice(users, batch)
        profiles[f"current recommend({batch} users)"] = profile_call(
            lambda: baseline.recommend(big)
        )
        profiles["current recommend(1 user) x200"] = profile_call(
            lambda: [baseline.recommend(u) for u in big[:200]]
        )
    return {
        "rows": rows,
        "stages": stages,
        "profiles": profiles,
        "exact_overlap": exact_overlap,
        "load_seconds": load_seconds,
        "num_users": len(users),
        "num_movies": len(baseline.movie_ids),
    }
