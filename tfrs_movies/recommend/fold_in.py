"""New people: fold a few ratings into the trained model as a query vector.

The movie vectors stay fixed; the person's vector minimizes the catalogue softmax the retrieval
task trained with (each rated movie a positive, weighted by its rating) plus an L2 penalty. The
objective is convex, so Newton steps (preconditioned by one shared inverse Hessian, see
:func:`~tfrs_movies.fold_in_graph.inverse_hessian`) reach its minimum deterministically.
The exported SavedModels do the same in TensorFlow (:mod:`tfrs_movies.fold_in_graph`).
"""

from __future__ import annotations

import numpy as np

from tfrs_movies.fold_in_graph import (
    CONVERGED_DECREASE,
    FOLD_IN_L2,
    MAX_NEWTON_STEPS,
    inverse_hessian,
    rating_weights,
)


class FoldIn:
    """Query vectors of people outside training, from their ratings.

    Args:
        movie_vectors: (M, D) movie tower outputs; the last column is the retrieval bias.
        temperature: the retrieval softmax temperature the model trained with.
        preconditioner: (D - 1, D - 1) the shared inverse Hessian, as the run's exported fold-in
            uses it (``retrieval_index.fold_in_graph.inverse_hessian``); None: the one at the
            start point (:func:`~tfrs_movies.fold_in_graph.inverse_hessian`), for runs
            exported without it. Either reaches the same minimum.
    """

    def __init__(
        self,
        movie_vectors: np.ndarray,
        temperature: float,
        preconditioner: np.ndarray | None = None,
    ):
        self.temperature = float(temperature)
        # Operands made once: float64 vectors, their free (non-bias) columns contiguous, and
        # the shared preconditioner.
        self._movies = movie_vectors.astype(np.float64)
        self._free = np.ascontiguousarray(self._movies[:, :-1])
        if preconditioner is None:
            preconditioner = inverse_hessian(self._movies, self.temperature)
        self._preconditioner = np.asarray(preconditioner, np.float64)

    def __call__(self, rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """The query vector that explains the rated movies.

        Args:
            rows: (n,) int rated movie rows, n >= 1.
            ratings: (n,) their ratings on the star scale.

        Returns:
            (D,) float32 vector whose last coordinate is 1 (the bias coordinate); about 1 ms
            for 1,682 movies and 257 numbers.
        """
        weights = rating_weights(np.asarray(ratings, np.float64))
        target = (weights[:, None] * self._movies[rows]).sum(0) / weights.sum()
        return fold_in(self._movies, self._free, self._preconditioner, target, self.temperature)


def fold_in(
    movies: np.ndarray,
    free: np.ndarray,
    preconditioner: np.ndarray,
    target: np.ndarray,
    temperature: float,
    max_steps: int = MAX_NEWTON_STEPS,
) -> np.ndarray:
    """Minimizes ``logsumexp(movies @ v / T) - target @ v / T + L2 * |v|^2`` over ``v[:-1]``
    (``v[-1] = 1``, the bias coordinate) by preconditioned Newton steps with backtracking,
    from ``v[:-1] = 0``.

    Args:
        movies: (N, D) float64 movie vectors; ``free``: their first D-1 columns, contiguous.
        preconditioner: (D-1, D-1) the shared inverse Hessian
            (:func:`~tfrs_movies.fold_in_graph.inverse_hessian`).
        target: (D,) rating-weighted mean of the rated movies' vectors.
        temperature: the retrieval softmax temperature T.
        max_steps: most Newton steps (4-6 on average, 12 at most measured).

    Returns:
        (D,) float32 minimizer; the loss is within ~1e-6 of its minimum.
    """
    penalty, scale = FOLD_IN_L2, 1.0 / temperature
    vector = np.zeros_like(target)
    vector[-1] = 1.0

    def loss_of(logits, v):
        top = logits.max()
        return top + np.log(np.exp(logits - top).sum()) - scale * (target @ v) + penalty * (v @ v)

    logits = movies[:, -1] * scale
    loss = loss_of(logits, vector)
    for _ in range(max_steps):
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        gradient = scale * (probabilities @ free - target[:-1]) + 2 * penalty * vector[:-1]
        step = preconditioner @ gradient
        decrease = float(gradient @ step)  # > 0: the Hessian is positive definite
        if decrease < CONVERGED_DECREASE:  # the loss is within ~1e-6 of its minimum
            break
        direction = free @ step * scale  # logits are linear in the vector
        size = 1.0
        while True:  # backtracking (Armijo) line search
            candidate = vector.copy()
            candidate[:-1] -= size * step
            candidate_logits = logits - size * direction
            candidate_loss = loss_of(candidate_logits, candidate)
            if candidate_loss <= loss - 0.25 * size * decrease or size < 1e-4:
                break
            size *= 0.5
        vector, logits, loss = candidate, candidate_logits, candidate_loss
    return vector.astype(np.float32)
