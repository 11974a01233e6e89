"""New people inside the exported SavedModels: the fold-in as TensorFlow ops (issue 12).

A person who was not in training is described by the movies they rated. Their query vector
minimizes the catalogue softmax the retrieval task trained with (each rated movie a positive,
weighted by its rating) plus an L2 penalty, over fixed movie vectors; the last coordinate stays
1 (the retrieval-bias coordinate). :class:`FoldInGraph` computes it for a batch of people with
damped Newton steps (on one thread, one person over 1,682 movies: about 0.9 ms with 65-number
vectors, 5.8 ms with the default ensemble's 257), so
``retrieval_index/`` and ``ranking_model/`` serve new people to code that has only
``import scann, tensorflow``. :class:`tfrs_movies.recommend.fold_in.FoldIn` is the same
algorithm in numpy (0.3 ms at 65 numbers, 8.1 ms at 257; a test checks that both reach the same
vector).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

FOLD_IN_L2 = 5.0
"""L2 weight on a folded-in vector, relative to the mean softmax loss over the rated movies.
Tuned on ml-100k (default config): 3-10 best reproduce the trained users' top-50 from 10
ratings."""

MAX_NEWTON_STEPS = 20  # as FoldIn; 2-3 reach the minimum in practice
# Step sizes tried at once, a vectorized backtracking line search; a full step is nearly always
# taken.
STEP_SIZES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)


def rating_weights(ratings):
    """How much each rated movie pulls the vector: 2 stars or less 5%, 4 or more fully.

    Training counts every rating as "chose to watch"; a person who tells us a rating also says
    how much they liked it.

    Args:
        ratings: a numpy array or a tensor of star ratings.

    Returns:
        The weights, of the same kind and shape.
    """
    linear = (ratings - 2.0) / 2.0
    if isinstance(linear, np.ndarray):
        return np.clip(linear, 0.05, 1.0)
    return tf.clip_by_value(linear, 0.05, 1.0)


class FoldInGraph(tf.Module):
    """Query vectors of people outside training, from (movie index, rating) histories.

    Args:
        movie_vectors: (M + 1, D) movie tower outputs by vocabulary index (row 0, the
            out-of-vocabulary row, is never a positive nor a softmax candidate); the last
            column is the retrieval bias.
        temperature: the retrieval softmax temperature the model trained with.
    """

    def __init__(self, movie_vectors: np.ndarray, temperature: float):
        super().__init__()
        # Stored in float32 (the SavedModel's size); computed in float64, because the line
        # search compares losses that differ by ~1e-6 near the minimum.
        self.stored_vectors = tf.constant(np.asarray(movie_vectors, np.float32))
        self.scale = 1.0 / float(temperature)

    def __call__(self, movie_index: tf.Tensor, ratings: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Folds in B people.

        Args:
            movie_index: (B, N) int vocabulary indices of the rated movies; 0 (unknown ids and
                padding) is ignored.
            ratings: (B, N) float ratings on the star scale (ignored where the index is 0).

        Returns:
            ``(vectors, known)``: (B, D) float32 query vectors with last coordinate 1, and (B,)
            bool, False for a person with no known movie, whose vector says nothing about them
            (the exported signatures fall back to popularity for them).
        """
        movie_vectors = tf.cast(self.stored_vectors, tf.float64)
        movie_index = tf.cast(movie_index, tf.int64)
        mask = tf.cast(movie_index > 0, tf.float64)
        weights = rating_weights(tf.cast(ratings, tf.float64)) * mask
        total = tf.reduce_sum(weights, axis=1)
        known = total > 0
        rated = tf.gather(movie_vectors, movie_index)  # (B, N, D)
        target = tf.einsum("bn,bnd->bd", weights, rated) / tf.maximum(total, 1e-12)[:, None]
        movies = movie_vectors[1:]  # (M, D): the catalogue without the OOV row
        free = movies[:, :-1]
        scale, penalty = self.scale, FOLD_IN_L2
        ones = tf.ones_like(target[:, -1:])

        def logits_and_loss(free_part):  # (..., B, D - 1) -> (..., B, M) logits, (..., B) loss
            vector = tf.concat([free_part, tf.broadcast_to(ones, tf.shape(free_part[..., :1]))], -1)
            logits = tf.einsum("...bd,md->...bm", vector, movies) * scale
            loss = (
                tf.reduce_logsumexp(logits, axis=-1)
                - scale * tf.reduce_sum(target * vector, axis=-1)
                + penalty * tf.reduce_sum(vector * vector, axis=-1)
            )
            return logits, loss

        current = target[:, :-1]
        logits, loss = logits_and_loss(current)
        # The Hessian at the start serves every step, as in the numpy FoldIn: it changes little
        # near the optimum, and an inexact one only slows convergence, not the point reached.
        # Float32 is enough for the Hessian: it only scales the steps; the line search and
        # the stopping test, in float64, decide the point reached.
        probabilities = tf.cast(tf.nn.softmax(logits), tf.float32)
        free32 = tf.cast(free, tf.float32)
        mean = tf.matmul(probabilities, free32)
        hessian = scale**2 * (
            tf.matmul(tf.transpose(probabilities[:, :, None] * free32[None], [0, 2, 1]), free32)
            - mean[:, :, None] * mean[:, None, :]
        ) + 2 * penalty * tf.eye(free.shape[1], dtype=tf.float32)
        inverse_hessian = tf.cast(tf.linalg.inv(hessian), tf.float64)
        sizes = tf.constant(STEP_SIZES, tf.float64)

        def newton_step(steps, current, logits, loss, converged):
            mean = tf.matmul(tf.nn.softmax(logits), free)  # (B, D - 1)
            gradient = scale * (mean - target[:, :-1]) + 2 * penalty * current
            step = tf.einsum("bde,be->bd", inverse_hessian, gradient)
            decrease = tf.reduce_sum(gradient * step, axis=1)  # (B,) > 0
            # Within ~1e-6 of the minimum (vector within ~1e-4): this person stays put.
            converged = converged | (decrease < 1e-6)
            candidates = current[None] - sizes[:, None, None] * step[None]  # (S, B, D - 1)
            candidate_logits, candidate_loss = logits_and_loss(candidates)
            armijo = candidate_loss <= loss[None] - 0.25 * sizes[:, None] * decrease[None]
            # The first (largest) size that decreases enough; the smallest if none does.
            choice = tf.argmax(tf.cast(armijo, tf.int32), axis=0)
            choice = tf.where(tf.reduce_any(armijo, axis=0), choice, len(STEP_SIZES) - 1)

            def chosen(values):  # (S, B, ...) -> (B, ...): each person's chosen size
                return tf.gather(tf.experimental.numpy.moveaxis(values, 0, 1), choice, batch_dims=1)

            current = tf.where(converged[:, None], current, chosen(candidates))
            logits = tf.where(converged[:, None], logits, chosen(candidate_logits))
            loss = tf.where(converged, loss, chosen(candidate_loss))
            return steps + 1, current, logits, loss, converged

        _, current, _, _, _ = tf.while_loop(
            lambda steps, current, logits, loss, converged: (
                (steps < MAX_NEWTON_STEPS) & ~tf.reduce_all(converged)
            ),
            newton_step,
            (tf.constant(0), current, logits, loss, tf.zeros_like(known)),
        )
        vectors = tf.concat([current, ones], -1)
        return tf.cast(vectors, tf.float32), known
