"""The iALS baseline from the ``implicit`` library, with its hyperparameters chosen on validation.

:class:`IALS` wraps ``implicit.cpu.als.AlternatingLeastSquares`` (Hu, Koren & Volinsky, 2008,
with the conjugate-gradient solver of Takács, Pilászy & Tikk, 2011) behind the interface of the
other baselines: ``fit(train)``, then a score function for
:func:`~tfrs_movies.evaluation.metrics.topn_metrics`. :func:`choose_ials` picks its
hyperparameters on a validation split, fitting on the rest of the training split; the test split
is never looked at.

``implicit`` (and the ``scipy.sparse`` it needs) is imported inside :meth:`IALS.fit`: this module
is imported with :mod:`tfrs_movies.evaluation`, which ``tfrs-movies evaluate`` and ``compare``
load for their tables, and the import alone takes about 0.5 s here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import threadpoolctl

from tfrs_movies.data.schema import Ratings
from tfrs_movies.evaluation.selection import GridChoice, choose_and_refit, grid_search
from tfrs_movies.evaluation.user_items import UserItems
from tfrs_movies.hardware import available_cores
from tfrs_movies.log import Log, silent

# The validation grid of every run up to IALS_SEARCH_MAX_RATINGS: 18 fits. With regularization
# 300 as well (24 fits: 8.5 s on ml-100k, 16 s on ml-latest-small on 2 shared cores) its points
# were the worst of the grid on both data sets, so it was dropped. ml-100k chose factors 64,
# regularization 30, alpha 3; ml-latest-small 128, 100, 30 (there 300 with alpha 30 had validation
# NDCG@10 0.091 vs 0.126). Regularization and alpha interact: the best points lie on a diagonal.
IALS_GRID: dict[str, tuple[float, ...]] = {
    "factors": (64, 128),
    "regularization": (10.0, 30.0, 100.0),
    "alpha": (3.0, 10.0, 30.0),
    "iterations": (15,),
}

# Above this many fit ratings there is no search: the defaults of IALS are fitted once. Measured
# on ml-1m-sized synthetic data (760k fit ratings, 6,000 users x 3,700 movies): a fit of the
# defaults takes 3.5 s (about 4.6 us per rating) and ranking the validation users 0.9 s, so the
# search costs about a minute there and grows with ratings and users x movies beyond.
IALS_SEARCH_MAX_RATINGS = 1_000_000

# Above this many training ratings a fit uses one thread per core and logs each sweep.
IALS_THREADED_MIN_RATINGS = 1_000_000


def search_workers() -> int:
    """Grid points fitted at once: one per core (each search fit is single-threaded, as the
    search stops at :data:`IALS_SEARCH_MAX_RATINGS` fit ratings)."""
    return available_cores()


class IALS:
    """Implicit-feedback matrix factorization by alternating least squares, from ``implicit``.

    Fitted on the binary user x movie matrix of training ratings (every rating counts as a
    positive, whatever its stars). In ``implicit``'s convention an observed pair has confidence
    ``alpha`` and every other pair confidence 1 with preference 0. Scores are
    ``user_factors @ movie_factors.T``; movies without training ratings score -inf.

    Deterministic for a seed: the factors start from ``random_state=seed``, and each
    least-squares solve is one user's (or movie's) own, so ``implicit``'s threads do not change
    the result (a test checks it); BLAS is held to one thread during the fit, as ``implicit``
    recommends.

    The defaults are the choice of a wider validation grid on ml-100k (issue 12: factors to
    256, regularization 1-300, alpha 1-30).

    Args:
        factors: latent dimension.
        regularization: L2 weight on the factors.
        alpha: confidence of an observed (user, movie) pair.
        iterations: ALS sweeps (each solves all users, then all movies).
        seed: seeds the factor initialization.
        num_threads: ``implicit``'s threads; 0 means one per core. None (the default) is one
            thread up to :data:`IALS_THREADED_MIN_RATINGS` training ratings and one per core
            above: on 2 busy cores two threads were 2-3x slower per fit on ml-100k (0.72 s
            vs 0.32 s), while a fit of 19M ratings keeps both cores busy for minutes.
    """

    def __init__(
        self,
        factors: int = 128,
        regularization: float = 50.0,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.seed = seed
        self.num_threads = num_threads
        self.user_factors: np.ndarray | None = None
        self.movie_factors: np.ndarray | None = None
        self._unrated: np.ndarray | None = None

    def params(self) -> dict[str, float]:
        """The hyperparameters, as recorded in ``metrics.json``."""
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
        }

    def fit(self, train: Ratings, log: Log = silent) -> IALS:
        """Fits the factors on ``train``'s (user, movie) pairs. Returns ``self``.

        Args:
            train: the ratings to fit.
            log: receives a line per ALS sweep when ``train`` has more than
                :data:`IALS_THREADED_MIN_RATINGS` ratings (each sweep then takes seconds).

        Raises:
            ValueError: ``train`` has no ratings.
        """
        import scipy.sparse
        from implicit.cpu.als import AlternatingLeastSquares

        if train.num_ratings == 0:
            raise ValueError("IALS needs at least one training rating")
        seen = UserItems.from_ratings(train)
        user_movies = scipy.sparse.csr_matrix(
            (np.ones(seen.indices.shape[0], np.float32), seen.indices, seen.indptr),
            shape=(train.num_users, train.num_movies),
        )
        large = train.num_ratings > IALS_THREADED_MIN_RATINGS
        threads = self.num_threads if self.num_threads is not None else (0 if large else 1)

        def progress(iteration: int, seconds: float, loss: float | None) -> None:
            if large:
                log(f"ials sweep {iteration + 1}/{self.iterations} ({seconds:.1f}s)")

        # Inside the limit, implicit also skips its warning about a multi-threaded BLAS.
        with threadpoolctl.threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=threads,
            )
            model.fit(user_movies, show_progress=False, callback=progress)
        self.user_factors = np.asarray(model.user_factors, np.float32)
        self.movie_factors = np.asarray(model.item_factors, np.float32)
        self._unrated = np.bincount(train.movie_index, minlength=train.num_movies) == 0
        return self

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Returns (B, num_movies) float32 scores for (B,) user rows; -inf for unrated movies."""
        if self.movie_factors is None:
            raise RuntimeError("IALS is not fitted; call fit(train) first")
        out = self.user_factors[np.asarray(user_rows)] @ self.movie_factors.T
        out[:, self._unrated] = -np.inf
        return out

    __call__ = scores


def choose_ials(
    fit: Ratings,
    validation: Ratings,
    grid: Mapping[str, Sequence[float]] | None = None,
    seed: int = 0,
    metric: str = "ndcg@10",
) -> GridChoice:
    """Grid search of :class:`IALS`, fitted on ``fit`` and ranked on ``validation``.

    Each user's ``fit`` movies are excluded from their ranking, as on test. The test split is
    never an argument, so it cannot leak into the choice. Points are fitted
    :func:`search_workers` at once.

    Args:
        fit: the ratings each candidate is fitted on.
        validation: held-out ratings over the same tables; must not be empty.
        grid: hyperparameter name → candidate values (keyword arguments of :class:`IALS`);
            :data:`IALS_GRID` when ``None``.
        seed: the seed of every candidate.
        metric: a key of :func:`topn_metrics`' result at cut-off 10 (``ndcg@10``,
            ``recall@10``, ...); the highest wins, ties go to the first in grid order.

    Returns:
        The :class:`~tfrs_movies.evaluation.selection.GridChoice`.

    Raises:
        ValueError: ``validation`` is empty.
    """
    return grid_search(
        lambda **params: IALS(**params, seed=seed),
        IALS_GRID if grid is None else grid,
        fit,
        validation,
        metric,
        workers=search_workers(),
    )


def fit_ials_baseline(
    fit: Ratings,
    validation: Ratings,
    train: Ratings,
    seed: int = 0,
    log: Log = silent,
) -> tuple[IALS, dict[str, Any]]:
    """Chooses :class:`IALS`'s hyperparameters on ``validation``, then refits them on ``train``.

    When ``fit`` has more than :data:`IALS_SEARCH_MAX_RATINGS` ratings there is no search:
    the defaults of :class:`IALS` are fitted on ``train``. Either way one line to ``log``
    names the hyperparameters and where they came from.

    Args:
        fit: the part of ``train`` the candidates are fitted on.
        validation: the rest of ``train``, held out for the choice; must not be empty.
        train: the whole training split the chosen setting is refitted on.
        seed: the seed of every fit.
        log: receives the line above.

    Returns:
        ``(model, record)``: the model fitted on ``train``, and what ``metrics.json`` keeps of
        the choice: ``{"params": {...}, "validation": {"metric": "ndcg@10", "value": ...,
        "grid_points": n}}``, with ``"validation": None`` when there was no search.
    """
    too_large = fit.num_ratings > IALS_SEARCH_MAX_RATINGS
    return choose_and_refit(
        "ials",
        lambda **params: IALS(**params, seed=seed),
        IALS_GRID,
        fit,
        validation,
        train,
        no_search=(
            f"{fit.num_ratings:,} fit ratings > {IALS_SEARCH_MAX_RATINGS:,}" if too_large else None
        ),
        log=log,
        workers=search_workers(),
    )
