"""Reference baselines, fit on the training split only and deterministic for a seed.

:class:`MostPopular`, :class:`BiasOnly` (regularized user and movie biases), :class:`BiasedMF`
(biased matrix factorization trained with minibatch Adam, in numpy) and :class:`EASE` (Steck,
2019); iALS from ``implicit`` is in :mod:`tfrs_movies.evaluation.ials`. Each scorer maps (B,)
user rows to (B, num_movies) scores, so it plugs into
:func:`~tfrs_movies.evaluation.metrics.topn_metrics`;
:func:`~tfrs_movies.evaluation.baseline_suite.evaluate_baselines` runs them all on one split.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tfrs_movies.data.schema import Ratings
from tfrs_movies.evaluation.lazy_adam import LazyAdam
from tfrs_movies.evaluation.selection import choose_and_refit
from tfrs_movies.evaluation.user_items import UserItems
from tfrs_movies.log import Log, silent


def _check_fitted(model: object, attribute: str) -> None:
    if getattr(model, attribute, None) is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted; call fit(train) first")


class MostPopular:
    """Recommends the movies with the most training ratings to everyone.

    Attributes:
        counts: (num_movies,) float64 number of training ratings per movie, after :meth:`fit`.
    """

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, train: Ratings) -> MostPopular:
        """Counts training ratings per movie. Returns ``self``."""
        self.counts = np.bincount(train.movie_index, minlength=train.num_movies).astype(np.float64)
        return self

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Returns (num_movies,) float64 scores that every user shares: the training counts.

        One row for all of ``user_rows``, which :func:`topn_metrics` ranks once (ties by movie
        row, as it always breaks them) instead of once per user.
        """
        _check_fitted(self, "counts")
        return self.counts

    __call__ = scores


class BiasOnly:
    """Rating predictor ``mean + user bias + movie bias`` with damped (regularized) biases.

    The classic baseline predictor (Koren, 2010): movie biases are the damped mean residual
    from the global mean, then user biases the damped mean residual after movie biases; a few
    alternations refine both. Closed form, so it takes milliseconds.

    Args:
        movie_damping: pseudo-count pulling movie biases towards 0.
        user_damping: pseudo-count pulling user biases towards 0.
        iterations: alternations of the two updates.
    """

    def __init__(
        self, movie_damping: float = 10.0, user_damping: float = 10.0, iterations: int = 3
    ) -> None:
        self.movie_damping = movie_damping
        self.user_damping = user_damping
        self.iterations = iterations
        self.global_mean: float | None = None
        self.user_bias: np.ndarray | None = None
        self.movie_bias: np.ndarray | None = None

    def fit(self, train: Ratings) -> BiasOnly:
        """Fits the biases on ``train``. Returns ``self``."""
        rating = train.rating.astype(np.float64)
        self.global_mean = float(rating.mean())
        user_counts = np.bincount(train.user_index, minlength=train.num_users)
        movie_counts = np.bincount(train.movie_index, minlength=train.num_movies)
        self.user_bias = np.zeros(train.num_users)
        self.movie_bias = np.zeros(train.num_movies)
        for _ in range(self.iterations):
            residual = rating - self.global_mean - self.user_bias[train.user_index]
            self.movie_bias = np.bincount(
                train.movie_index, residual, minlength=train.num_movies
            ) / (movie_counts + self.movie_damping)
            residual = rating - self.global_mean - self.movie_bias[train.movie_index]
            self.user_bias = np.bincount(train.user_index, residual, minlength=train.num_users) / (
                user_counts + self.user_damping
            )
        return self

    def predict(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Returns predicted ratings (float64) for parallel arrays of user and movie rows."""
        _check_fitted(self, "movie_bias")
        return self.global_mean + self.user_bias[user_rows] + self.movie_bias[movie_rows]

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Returns (B, num_movies) predicted ratings of every movie (ranks by movie bias)."""
        _check_fitted(self, "movie_bias")
        user_rows = np.asarray(user_rows)
        return self.global_mean + self.user_bias[user_rows][:, None] + self.movie_bias[None, :]

    __call__ = scores


def _with_unit_bias(table_rows: np.ndarray) -> np.ndarray:
    """Copy of (B, 1 + k) [bias | factors] rows with the bias column set to 1."""
    out = table_rows.copy()
    out[:, 0] = 1.0
    return out


class BiasedMF:
    """Biased matrix factorization (Koren, Bell & Volinsky 2009), trained with minibatch Adam.

    Prediction: ``mean + b_user + b_movie + <p_user, q_movie>``, with ``mean`` the training mean
    (fixed). Loss per minibatch: the mean over its ratings of
    ``(prediction - rating)^2 + l2 * (b_user^2 + b_movie^2 + |p_user|^2 + |q_movie|^2)``, so
    users and movies with many ratings are regularized in proportion to how often they are seen
    (as in Surprise's SVD). Implemented in numpy with a lazy (sparse) Adam that only updates the
    rows present in the minibatch, so it needs no TensorFlow, is bit-for-bit deterministic for a
    seed, and fits ml-100k (80k ratings) in a few seconds on 2 cores. Predictions are clipped to
    the training rating range.

    Defaults were tuned on the seed-42 random 80/20 split of ml-100k (RMSE ≈ 0.91).

    Args:
        num_factors: latent dimension.
        l2: L2 weight (see the loss above).
        learning_rate: Adam step size.
        batch_size: ratings per minibatch.
        epochs: passes over the training ratings.
        init_std: standard deviation of the normal initialization of the factors.
        seed: seeds the initialization and the minibatch order.
    """

    def __init__(
        self,
        num_factors: int = 32,
        l2: float = 0.1,
        learning_rate: float = 0.003,
        batch_size: int = 1024,
        epochs: int = 25,
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.num_factors = num_factors
        self.l2 = l2
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.init_std = init_std
        self.seed = seed
        self.global_mean: float | None = None
        self.user_bias: np.ndarray | None = None
        self.movie_bias: np.ndarray | None = None
        self.user_factors: np.ndarray | None = None
        self.movie_factors: np.ndarray | None = None
        self.rating_range: tuple[float, float] | None = None

    def fit(self, train: Ratings) -> BiasedMF:
        """Trains on ``train``. Returns ``self``.

        Users and movies without training ratings keep zero biases and zero factors, so their
        predictions fall back to the global mean (rather than random noise from the init).
        """
        if train.num_ratings == 0:
            raise ValueError("BiasedMF needs at least one training rating")
        rng = np.random.default_rng(self.seed)
        user_index = train.user_index.astype(np.int64)
        movie_index = train.movie_index.astype(np.int64)
        rating = train.rating.astype(np.float32)
        self.global_mean = float(rating.mean(dtype=np.float64))
        self.rating_range = (float(rating.min()), float(rating.max()))
        mean = np.float32(self.global_mean)

        k = self.num_factors
        # Column 0 of each table is the bias, columns 1: the factors; one gather serves both.
        user_table = np.zeros((train.num_users, k + 1), np.float32)
        movie_table = np.zeros((train.num_movies, k + 1), np.float32)
        user_table[:, 1:] = rng.standard_normal((train.num_users, k)) * self.init_std
        movie_table[:, 1:] = rng.standard_normal((train.num_movies, k)) * self.init_std
        user_adam = LazyAdam(user_table, self.learning_rate)
        movie_adam = LazyAdam(movie_table, self.learning_rate)

        for _ in range(self.epochs):
            order = rng.permutation(train.num_ratings)
            for start in range(0, order.shape[0], self.batch_size):
                batch = order[start : start + self.batch_size]
                users, movies = user_index[batch], movie_index[batch]
                user_vec, movie_vec = user_table[users], movie_table[movies]
                prediction = (
                    mean
                    + user_vec[:, 0]
                    + movie_vec[:, 0]
                    + np.einsum("bk,bk->b", user_vec[:, 1:], movie_vec[:, 1:])
                )
                scale = np.float32(2.0 / batch.shape[0])  # d(mean square)/d(prediction)
                error = ((prediction - rating[batch]) * scale)[:, None]
                # d(prediction)/d(bias) = 1 and d(prediction)/d(factors) = the other side's
                # factors; the L2 term adds 2 * l2 * own value per occurrence in the batch.
                user_grad = error * _with_unit_bias(movie_vec) + (scale * self.l2) * user_vec
                movie_grad = error * _with_unit_bias(user_vec) + (scale * self.l2) * movie_vec
                user_adam.step(users, user_grad)
                movie_adam.step(movies, movie_grad)

        # Rows never trained keep their random init; zero them so they predict the mean.
        user_table[np.bincount(user_index, minlength=train.num_users) == 0] = 0.0
        movie_table[np.bincount(movie_index, minlength=train.num_movies) == 0] = 0.0
        self.user_bias, self.user_factors = user_table[:, 0].copy(), user_table[:, 1:].copy()
        self.movie_bias, self.movie_factors = movie_table[:, 0].copy(), movie_table[:, 1:].copy()
        return self

    def predict(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Predicted ratings for parallel arrays of user and movie rows.

        Args:
            user_rows: (R,) int user rows.
            movie_rows: (R,) int movie rows.

        Returns:
            (R,) float32 ratings clipped to the training rating range.
        """
        _check_fitted(self, "movie_factors")
        user_rows = np.asarray(user_rows)
        movie_rows = np.asarray(movie_rows)
        raw = (
            self.global_mean
            + self.user_bias[user_rows]
            + self.movie_bias[movie_rows]
            + np.einsum("rk,rk->r", self.user_factors[user_rows], self.movie_factors[movie_rows])
        )
        return np.clip(raw, *self.rating_range).astype(np.float32)

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Returns (B, num_movies) float32 unclipped predicted ratings of every movie.

        Unclipped so that movies predicted above the top star still rank in order.
        """
        _check_fitted(self, "movie_factors")
        user_rows = np.asarray(user_rows)
        return (
            self.user_factors[user_rows] @ self.movie_factors.T
            + self.movie_bias[None, :]
            + (self.user_bias[user_rows, None] + np.float32(self.global_mean))
        )

    __call__ = scores


# The validation grid of EASE's ridge weight. On the runs' validation carves (by NDCG@10)
# ml-100k chose 500 (0.2677; 300: 0.2658) and ml-latest-small 300 (0.2198; 500: 0.2167).
EASE_GRID: dict[str, tuple[float, ...]] = {"l2": (100.0, 200.0, 300.0, 500.0, 1000.0)}
# Above this many movies with fit ratings there is no search: the default is fitted once. Each
# fit inverts a dense movies x movies matrix: about 30 s at ml-latest-small's 8,500 movies here
# (2 shared cores), and 8x that at twice the movies.
EASE_SEARCH_MAX_MOVIES = 10_000
EASE_LOG_MIN_MOVIES = 5_000  # a fit over this many movies logs a line (it takes seconds)


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck, 2019): a closed-form item-item model.

    On the binary user x movie matrix X of training ratings (every rating counts, whatever its
    stars): ``P = (XᵀX + l2·I)⁻¹``, ``B = I - P / diag(P)`` (column-wise), so ``diag(B) = 0``;
    a user's scores are ``x_user @ B``.

    Catalogue size: the model is a dense n x n matrix over the n movies with training ratings,
    costing O(n³) time and 8·n² bytes per copy (a few copies live at once). When more than
    ``max_movies`` movies have training ratings, the model is **restricted to the
    ``max_movies`` most-rated movies** (ties by movie row); the other movies score -inf and are
    never recommended. Movies without training ratings also score -inf.

    Runs choose ``l2`` on the validation split (:func:`fit_ease_baseline`). The default,
    ``l2=500``, is that choice on ml-100k's validation carve (best of 100-1,000 by NDCG@10); it
    is what a run fits when it cannot search.

    Args:
        l2: ridge weight λ.
        max_movies: largest item-item model to build (10,000 movies: ~1 GB and tens of seconds).
    """

    def __init__(self, l2: float = 500.0, max_movies: int = 10_000) -> None:
        if l2 <= 0:
            raise ValueError(f"EASE needs l2 > 0, got {l2}")
        self.l2 = l2
        self.max_movies = max_movies
        self.movie_rows: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self._seen: UserItems | None = None
        self._column: np.ndarray | None = None
        self._num_movies = 0

    def params(self) -> dict[str, float]:
        """The hyperparameters, as recorded in ``metrics.json``."""
        return {"l2": self.l2}

    def fit(self, train: Ratings, log: Log = silent) -> EASE:
        """Computes the item-item weights from ``train``. Returns ``self``.

        Args:
            train: the ratings to fit.
            log: receives a line before the inverse when it is over at least
                :data:`EASE_LOG_MIN_MOVIES` movies (it then takes seconds to minutes).
        """
        counts = np.bincount(train.movie_index, minlength=train.num_movies)
        rated = np.flatnonzero(counts > 0)
        if rated.shape[0] > self.max_movies:
            # Most-rated first; the stable sort breaks ties by movie row.
            by_popularity = rated[np.argsort(-counts[rated], kind="stable")]
            rated = np.sort(by_popularity[: self.max_movies])
        self.movie_rows = rated
        self._num_movies = train.num_movies
        self._seen = UserItems.from_ratings(train)

        column = np.full(train.num_movies, -1, dtype=np.int64)
        column[rated] = np.arange(rated.shape[0])
        n = rated.shape[0]
        gram = np.zeros((n, n), dtype=np.float64)
        # Accumulate XᵀX over chunks of dense user rows so X is never dense in full.
        all_users = np.arange(train.num_users)
        for start in range(0, train.num_users, 4096):
            x = self._user_matrix(all_users[start : start + 4096], column, n, np.float32)
            gram += x.T @ x
        gram[np.diag_indices(n)] += self.l2
        if n >= EASE_LOG_MIN_MOVIES:
            log(f"ease: l2 {self.l2:g}, inverting the {n:,} x {n:,} item Gram matrix")
        precision = np.linalg.inv(gram)
        weights = precision / (-np.diag(precision))[None, :]
        np.fill_diagonal(weights, 0.0)
        self.weights = weights.astype(np.float32)
        self._column = column
        return self

    def _user_matrix(
        self, user_rows: np.ndarray, column: np.ndarray, n: int, dtype: npt.DTypeLike
    ) -> np.ndarray:
        positions, movie_rows = self._seen.gather(user_rows)
        cols = column[movie_rows]
        keep = cols >= 0
        x = np.zeros((len(user_rows), n), dtype=dtype)
        x[positions[keep], cols[keep]] = 1.0
        return x

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Returns (B, num_movies) float32 scores; -inf for movies outside the model."""
        _check_fitted(self, "weights")
        user_rows = np.asarray(user_rows)
        n = self.movie_rows.shape[0]
        x = self._user_matrix(user_rows, self._column, n, np.float32)
        out = np.full((len(user_rows), self._num_movies), -np.inf, dtype=np.float32)
        out[:, self.movie_rows] = x @ self.weights
        return out

    __call__ = scores


def fit_ease_baseline(
    fit: Ratings | None, validation: Ratings | None, train: Ratings, log: Log = silent
) -> tuple[EASE, dict]:
    """Chooses :class:`EASE`'s ``l2`` on ``validation`` from :data:`EASE_GRID`, then refits it on
    ``train``, as iALS is chosen (:func:`~tfrs_movies.evaluation.ials.fit_ials_baseline`).

    Without validation ratings (``validation`` None or empty), or when more than
    :data:`EASE_SEARCH_MAX_MOVIES` movies have fit ratings, there is no search: the default
    ``l2`` is fitted on ``train``. Either way one line to ``log`` names ``l2`` and where it
    came from.

    Args:
        fit: the part of ``train`` the candidates are fitted on (needed with validation
            ratings).
        validation: the rest of ``train``, held out for the choice; None or empty: no search.
        train: the whole training split the chosen setting is refitted on.
        log: receives the line above and the fits' progress lines.

    Returns:
        ``(model, record)`` as :func:`~tfrs_movies.evaluation.selection.choose_and_refit`.

    Raises:
        ValueError: validation ratings without ``fit``.
    """
    return choose_and_refit(
        "ease",
        EASE,
        EASE_GRID,
        fit,
        validation,
        train,
        no_search=ease_no_search(fit, validation),
        log=log,
    )


def ease_no_search(fit: Ratings | None, validation: Ratings | None) -> str | None:
    """Why EASE's ``l2`` is not searched on ``validation`` (see :func:`fit_ease_baseline`), or
    None when it is.

    Raises:
        ValueError: validation ratings without ``fit``.
    """
    if validation is None or validation.num_ratings == 0:
        return "no validation ratings"
    if fit is None:
        raise ValueError("choosing EASE's l2 on validation needs the fit part it was held from")
    movies = np.count_nonzero(np.bincount(fit.movie_index))
    if movies > EASE_SEARCH_MAX_MOVIES:
        return f"{movies:,} movies with fit ratings > {EASE_SEARCH_MAX_MOVIES:,}"
    return None
