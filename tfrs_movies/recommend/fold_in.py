"""New people: fold a few ratings into the trained model as a query vector.

The movie vectors stay fixed; the person's vector minimizes the catalogue softmax the retrieval
task trained with (each rated movie a positive, weighted by its rating) plus an L2 penalty. The
objective is convex, so a few Newton steps reach its minimum deterministically. The exported
SavedModels do the same in TensorFlow (:mod:`tfrs_movies.fold_in_graph`).
"""

from __future__ import annotations

import numpy as np

from tfrs_movies.fold_in_graph import FOLD_IN_L2, rating_weights


class FoldIn:
    """Query vectors of people outside training, from their ratings.

    Args:
        movie_vectors: (M, D) movie tower outputs; the last column is the retrieval bias.
        temperature: the retrieval softmax temperature the model trained with.
    """

    def __init__(self, movie_vectors: np.ndarray, temperature: float):
        self.temperature = float(temperature)
        # Operands made once: float64 vectors, and their free (non-bias) columns contiguous in
        # float64 and float32 (see fold_in).
        self._movies = movie_vectors.astype(np.float64)
        self._free = np.ascontiguousarray(self._movies[:, :-1])
        self._free32 = self._free.astype(np.float32)

    def __call__(self, rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """The query vector that explains the rated movies.

        Args:
            rows: (n,) int rated movie rows, n >= 1.
            ratings: (n,) their ratings on the star scale.

        Returns:
            (D,) float32 vector whose last coordinate is 1 (the bias coordinate); about 0.5 ms
            for 1,682 movies.
        """
        weights = rating_weights(np.asarray(ratings, np.float64))
        target = (weights[:, None] * self._movies[rows]).sum(0) / weights.sum()
        return fold_in(self._movies, self._free, self._free32, target, self.temperature)


def fold_in(
    movies: np.ndarray,
    free: np.ndarray,
    free32: np.ndarray,
    target: np.ndarray,
    temperature: float,
    max_steps: int = 20,
) -> np.ndarray:
    """Minimizes ``logsumexp(movies @ v / T) - target @ v / T + L2 * |v|^2`` over ``v[:-1]``
    (``v[-1] = 1``, the bias coordinate) by Newton steps with backtracking.

    Args:
        movies: (N, D) float64 movie vectors; ``free`` and ``free32``: their first D-1
            columns, contiguous, in float64 and float32.
        target: (D,) rating-weighted mean of the rated movies' vectors.
        temperature: the retrieval softmax temperature T.
        max_steps: most Newton steps (2-3 are typical).

    Returns:
        (D,) float32 minimizer, started from ``target`` (its last coordinate set to 1); the
        loss is within ~1e-6 of its minimum.
    """
    penalty, scale = FOLD_IN_L2, 1.0 / temperature
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
