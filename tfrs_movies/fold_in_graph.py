"""New people inside the exported SavedModels: the fold-in as TensorFlow ops (issue 12).

A person who was not in training is described by the movies they rated. Their query vector
minimizes the catalogue softmax the retrieval task trained with (each rated movie a positive,
weighted by its rating) plus an L2 penalty, over fixed movie vectors; the last coordinate stays
1 (the retrieval-bias coordinate). :class:`FoldInGraph` computes it for a batch of people with
damped Newton steps, so ``retrieval_index/`` and ``ranking_model/`` serve new people to code
that has only ``import scann, tensorflow``. :class:`tfrs_movies.recommend.fold_in.FoldIn` is
the same minimization in numpy, from the zero start (a test checks that both reach the same
vector).

Every step is preconditioned by one inverse Hessian shared by everyone
(:func:`inverse_hessian`): the Hessian averaged at the fold-ins of 64 trained users, computed
once at export. A person's own Hessian costs a (D, M) x (M, D) product per person, most of the
fold-in's time with the ensemble's 257 numbers (numpy, one thread, ml-100k: 6.8 ms a person
with it, 1.0 ms with the Hessian at the start point shared). Measured in numpy on 50 random
ml-100k histories of 5-40 ratings, the same minimum is reached in 4.2 steps on average (8 at
most) with the averaged Hessian, 7.9 (10) with the one at the start point, and 8.9 (16) with
each person's own Hessian at the start.

Every person starts from a linear guess of their minimum (:meth:`FoldInGraph._start`), a ridge
regression from the person's target to the minima of 512 short histories of trained users
(:func:`start_histories`), also fitted once at export; without it, everyone starts from free
coordinates 0 (the softmax over the retrieval biases alone). On the default ml-100k run,
measured in numpy with the exported preconditioner on 150 random subsets of 2-40 of a trained
user's movies (random ratings), the minimum is reached in 4.7 steps on average instead of 6.7
from 0 (at most 10 and 11), and for 150 people of 2-5 random movies rated 3-5 stars (as in
``load_test.py``) in 5.1 instead of 6.8.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

FOLD_IN_L2 = 5.0
"""L2 weight on a folded-in vector, relative to the mean softmax loss over the rated movies.
Tuned on ml-100k (default config): 3-10 best reproduce the trained users' top-50 from 10
ratings."""

CONVERGED_DECREASE = 1e-6
"""A person has converged when the loss decrease their Newton step predicts is below this: the
loss is within about this much of its minimum (the vector within ~1e-4)."""

START_RIDGE = 0.01
"""Ridge weight of the start point's regression, relative to the mean of its features' Gram
diagonal. Measured on the default ml-100k run, the start refitted to histories with random
ratings (then 150 subsets of 2-40 of a trained user's movies): 0.001, 0.01, 0.1 and 1 took 4.6,
4.5, 4.3 and 5.3 steps on average, the zero start 6.4."""

MAX_NEWTON_STEPS = 30  # FoldIn too; 4-6 on average reach the minimum, 12 at most (measured)
# Step sizes tried at once, a vectorized backtracking line search. The numpy fold-in, which
# halves until the step is accepted, took only 1 and 0.5 in 3,908 steps (800 histories of 1-400
# ratings, ml-100k and ml-latest-small); a person for whom none is accepted takes the smallest.
STEP_SIZES = (1.0, 0.5, 0.25)


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


def inverse_hessian(
    catalogue: np.ndarray, temperature: float, queries: np.ndarray | None = None
) -> np.ndarray:
    """The Newton preconditioner of the fold-in: the inverse of the loss's Hessian, averaged
    over people at the given query vectors.

    At a vector ``v`` the Hessian over the free coordinates is the covariance of the movies'
    free coordinates under the softmax of ``movies @ v / T``, over T squared, plus twice the L2
    weight. Averaged over people it is one matrix, computed once; the fold-in uses it for every
    step of every person. Its default point, free coordinates 0 (where every fold-in starts), is
    the same for everyone: the softmax is over the retrieval biases alone.

    Args:
        catalogue: (M, D) movie vectors (no out-of-vocabulary row); the last column is the
            retrieval bias.
        temperature: the retrieval softmax temperature.
        queries: (R, D) query vectors to average the Hessian over (last coordinate 1); None:
            the start point alone.

    Returns:
        (D - 1, D - 1) float64 symmetric positive-definite inverse Hessian.
    """
    catalogue = np.asarray(catalogue, np.float64)
    if queries is None:
        queries = np.eye(catalogue.shape[1])[-1:]
    scale = 1.0 / float(temperature)
    logits = np.asarray(queries, np.float64) @ catalogue.T * scale  # (R, M)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    free = catalogue[:, :-1]
    means = probabilities @ free  # (R, D - 1)
    second_moment = (free * probabilities.mean(axis=0)[:, None]).T @ free
    hessian = scale**2 * (second_moment - means.T @ means / len(means))
    hessian.flat[:: len(hessian) + 1] += 2 * FOLD_IN_L2
    inverse = np.linalg.inv(hessian)
    return (inverse + inverse.T) / 2  # exactly symmetric


def reference_histories(
    user_index: np.ndarray,
    movie_index: np.ndarray,
    ratings: np.ndarray,
    count: int = 64,
    max_ratings: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """Histories of ``count`` trained users, evenly spaced over the users (deterministic), for
    :class:`FoldInGraph`'s preconditioner.

    Args:
        user_index, movie_index, ratings: (n,) the training ratings, by vocabulary index.
        count: how many users at most.
        max_ratings: each user's first ``max_ratings`` ratings (in the given order) at most,
            which bounds the fold-in's (count, N, D) gather on large datasets.

    Returns:
        ``(movie_index, ratings)``: (count, N) int64 and float32, padded with index 0.
    """
    sizes, own = _ratings_by_user(user_index)
    chosen = np.unique(np.linspace(0, len(sizes) - 1, min(count, len(sizes))).astype(int))
    width = int(min(sizes[chosen].max(), max_ratings)) if len(chosen) else 1
    return _padded([own(user)[:width] for user in chosen], movie_index, ratings, width)


def start_histories(
    user_index: np.ndarray,
    movie_index: np.ndarray,
    ratings: np.ndarray,
    count: int = 512,
    max_ratings: int = 50,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Short histories as new people give them, for :class:`FoldInGraph`'s start point: each a
    random subset of one trained user's ratings, of a random size from 1 to ``max_ratings``
    (at most the user's count), the users evenly spaced (some taken twice when ``count``
    exceeds them).

    Args:
        user_index, movie_index, ratings: (n,) the training ratings, by vocabulary index.
        count: how many histories.
        max_ratings: the largest history.
        seed: the random sizes and subsets (the same arguments give the same histories).

    Returns:
        ``(movie_index, ratings)``: (count, width) int64 and float32, padded with index 0.
    """
    sizes, own = _ratings_by_user(user_index)
    if len(sizes) == 0:
        return _padded([], movie_index, ratings, 1)
    rng = np.random.default_rng(seed)
    chosen = np.linspace(0, len(sizes) - 1, count).astype(int)
    lengths = [int(rng.integers(1, min(sizes[user], max_ratings) + 1)) for user in chosen]
    taken = [
        rng.choice(own(user), length, replace=False)
        for user, length in zip(chosen, lengths, strict=True)
    ]
    return _padded(taken, movie_index, ratings, max(lengths))


def _ratings_by_user(user_index: np.ndarray) -> tuple[np.ndarray, Callable[[int], np.ndarray]]:
    """Each user's rating count, by user in sorted order, and a function from a user's position
    in that order to the positions of their ratings (in the given order)."""
    sizes = np.unique(user_index, return_counts=True)[1]
    order = np.argsort(user_index, kind="stable")  # each user's ratings together, in order
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return sizes, lambda user: order[starts[user] : starts[user + 1]]


def _padded(
    people: list[np.ndarray], movie_index: np.ndarray, ratings: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(movie_index, ratings)`` (len(people), width) int64 and float32 of each person's rating
    positions, padded with index 0."""
    histories = np.zeros((len(people), width), np.int64)
    values = np.zeros((len(people), width), np.float32)
    for row, taken in enumerate(people):
        histories[row, : len(taken)] = movie_index[taken]
        values[row, : len(taken)] = ratings[taken]
    return histories, values


class FoldInGraph(tf.Module):
    """Query vectors of people outside training, from (movie index, rating) histories.

    Args:
        movie_vectors: (M + 1, D) movie tower outputs by vocabulary index (row 0, the
            out-of-vocabulary row, is never a positive nor a softmax candidate); the last
            column is the retrieval bias.
        temperature: the retrieval softmax temperature the model trained with.
        reference: ``(movie_index, ratings)`` (R, N) histories of trained people (see
            :func:`reference_histories`): the preconditioner is the Hessian averaged at their
            fold-ins, which halves the steps (4 instead of 8 on average, ml-100k); None: the
            Hessian at the start point.
        start_reference: ``(movie_index, ratings)`` (R, N) histories of people like the ones
            to be served (see :func:`start_histories`): every fold-in starts from a linear
            guess of its minimum fitted to theirs (:meth:`_fit_start`); None: from free
            coordinates 0.
    """

    def __init__(
        self,
        movie_vectors: np.ndarray,
        temperature: float,
        reference: tuple[np.ndarray, np.ndarray] | None = None,
        start_reference: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        super().__init__()
        # Stored in float32 (the SavedModel's size); the losses are computed in float64,
        # because the line search compares losses that differ by ~1e-6 near the minimum.
        stored = np.asarray(movie_vectors, np.float32)
        # The catalogue without the OOV row, split as every call reads it: slicing one stored
        # (M + 1, D) tensor in the graph copied the free columns on every call (a SavedModel's
        # captured constant is not constant-folded).
        self.free = tf.constant(np.ascontiguousarray(stored[1:, :-1]))  # (M, D - 1) float32
        self.biases = tf.constant(stored[1:, -1].astype(np.float64))  # (M,) the same values
        self.scale = 1.0 / float(temperature)
        # A variable, so that the SavedModel keeps it readable (the numpy FoldIn uses the same
        # one). Float32 is enough: it only scales the steps; the line search and the stopping
        # test, in float64, decide the point reached.
        self.inverse_hessian = tf.Variable(
            inverse_hessian(stored[1:], temperature).astype(np.float32), trainable=False
        )
        # The start point as a linear function of the person's target (see _start): zero
        # here (every person starts at free coordinates 0) until fitted.
        dim = stored.shape[1]
        self.start_weights = tf.Variable(np.zeros((dim, dim - 1), np.float32), trainable=False)
        self.start_offset = tf.Variable(np.zeros(dim - 1, np.float32), trainable=False)
        if reference is not None:
            vectors, known = self(*(tf.constant(part) for part in reference))
            queries = vectors.numpy()[known.numpy()]
            if len(queries):
                self.inverse_hessian.assign(
                    inverse_hessian(stored[1:], temperature, queries).astype(np.float32)
                )
        if start_reference is not None:
            self._fit_start(*start_reference)

    def _rated(self, movie_index: tf.Tensor) -> tf.Tensor:
        """(B, N, D) float64 vectors of the rated movies; index 0 (unknown ids and padding)
        reads movie 1's vector, which the caller weighs 0 (no OOV row is stored)."""
        rows = tf.maximum(movie_index - 1, 0)
        return tf.concat(
            [
                tf.cast(tf.gather(self.free, rows), tf.float64),
                tf.gather(self.biases, rows)[..., None],
            ],
            axis=-1,
        )

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
        target, known = self._target(movie_index, ratings)
        current = self._minimize(target, self._start(target))
        vectors = tf.concat([current, tf.ones_like(current[:, :1])], -1)
        return tf.cast(vectors, tf.float32), known

    def _target(self, movie_index: tf.Tensor, ratings: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(B, D) float64 rating-weighted means of the rated movies' vectors, and (B,) bool:
        the person has a known movie (the target of one who has none is 0)."""
        movie_index = tf.cast(movie_index, tf.int64)
        mask = tf.cast(movie_index > 0, tf.float64)
        weights = rating_weights(tf.cast(ratings, tf.float64)) * mask
        total = tf.reduce_sum(weights, axis=1)
        target = (
            tf.einsum("bn,bnd->bd", weights, self._rated(movie_index))
            / tf.maximum(total, 1e-12)[:, None]
        )
        return target, total > 0

    def _start(self, target: tf.Tensor) -> tf.Tensor:
        """(B, D - 1) float64 start points: ``target @ start_weights + start_offset``, a linear
        guess of the minimum (fitted at export, see :meth:`_fit_start`; 0 before)."""
        guess = tf.matmul(tf.cast(target, tf.float32), self.start_weights) + self.start_offset
        return tf.cast(guess, tf.float64)

    def _fit_start(self, movie_index: np.ndarray, ratings: np.ndarray) -> None:
        """Fits the start point's linear guess to the minima of reference people.

        The people are folded in from the current start, a few at a time (at most 256, and at
        most 2**22 logits of each step size at once: on large catalogues the (S, B, M) logits
        of the line search, not the movies, bound the memory); then a ridge regression maps
        each person's target, and a constant, to their minimum (its weight
        :data:`START_RIDGE` times the mean of the features' Gram diagonal).

        Args:
            movie_index, ratings: (R, N) histories as :meth:`__call__` takes them; people with
                no known movie are left out.
        """
        batch = int(np.clip(2**22 // self.free.shape[0], 1, 256))
        targets, minima = [], []
        for first in range(0, len(movie_index), batch):
            part = slice(first, first + batch)
            target, known = self._target(tf.constant(movie_index[part]), tf.constant(ratings[part]))
            minimum = self._minimize(target, self._start(target))
            targets.append(target.numpy()[known.numpy()])
            minima.append(minimum.numpy()[known.numpy()])
        features = np.concatenate(targets) if targets else np.zeros((0, 1))
        if len(features) == 0:  # nobody to fit to: the zero start stays
            return
        features = np.concatenate([features, np.ones((len(features), 1))], axis=1)
        gram = features.T @ features
        gram.flat[:: len(gram) + 1] += START_RIDGE * np.trace(gram) / len(gram)
        solution = np.linalg.solve(gram, features.T @ np.concatenate(minima))
        self.start_weights.assign(solution[:-1].astype(np.float32))
        self.start_offset.assign(solution[-1].astype(np.float32))

    def _minimize(self, target: tf.Tensor, current: tf.Tensor) -> tf.Tensor:
        """(B, D - 1) float64 free coordinates of the minima, from (B, D) targets and (B,
        D - 1) start points, by preconditioned Newton steps with a backtracking line search."""
        # The matrix products read the stored float32 vectors (casting the whole catalogue to
        # float64 on every call took a quarter of the time); what they produce is accumulated
        # and compared in float64.
        free, biases = self.free, self.biases
        inverse_hessian = tf.cast(self.inverse_hessian, tf.float64)
        scale, penalty = self.scale, FOLD_IN_L2
        # (S, 1): one row per step size. Its numpy slices below become constants when traced,
        # so the loop body computes none of them.
        sizes = np.array(STEP_SIZES)[:, None]

        def product(left, right, transpose_right=False):  # float32 product, float64 result
            left = tf.cast(left, tf.float32)
            return tf.cast(tf.matmul(left, right, transpose_b=transpose_right), tf.float64)

        target_free = target[:, :-1]
        target_last = target[:, -1]

        def loss_of(logits, free_part):  # (..., B, M) logits, (..., B, D - 1) -> (..., B)
            # The vector is (free_part, 1): the bias coordinate adds target[-1] and 1.
            return (
                tf.reduce_logsumexp(logits, axis=-1)
                - scale * (tf.reduce_sum(target_free * free_part, axis=-1) + target_last)
                + penalty * (tf.reduce_sum(free_part * free_part, axis=-1) + 1.0)
            )

        def newton_direction(current, logits, converged):
            # The preconditioned gradient at the current point, the loss decrease it predicts,
            # and who has converged: within ~1e-6 of the minimum (vector within ~1e-4).
            gradient = (
                scale * (product(tf.nn.softmax(logits), free) - target_free) + 2 * penalty * current
            )
            step = tf.matmul(gradient, inverse_hessian)  # the inverse is symmetric
            decrease = tf.reduce_sum(gradient * step, axis=1)  # (B,) > 0
            return step, decrease, converged | (decrease < CONVERGED_DECREASE)

        logits = scale * (product(current, free, transpose_right=True) + biases[None, :])
        loss = loss_of(logits, current)
        converged = tf.zeros_like(target[:, 0], tf.bool)
        step, decrease, converged = newton_direction(current, logits, converged)

        def newton_step(steps, current, logits, loss, step, decrease, converged):
            # Each iteration moves, then looks at the new point: the loop stops as soon as
            # everyone has converged, without a line search from the final point (a loop that
            # looked first spent a whole line search only to find it converged).
            # Logits are linear in the vector: one product gives every step size's logits.
            direction = scale * product(step, free, transpose_right=True)  # (B, M)
            candidate_loss = loss_of(
                logits - direction * sizes[:, :, None],
                current - step * sizes[:, :, None],
            )  # (S, B)
            armijo = candidate_loss <= loss - decrease * (0.25 * sizes)
            # The first (largest) size that decreases enough, the smallest if none does; none
            # for a person who has converged.
            choice = tf.argmax(tf.cast(armijo, tf.int32), axis=0)
            choice = tf.where(tf.reduce_any(armijo, axis=0), choice, len(STEP_SIZES) - 1)
            size = tf.where(converged, tf.zeros_like(decrease), tf.gather(sizes[:, 0], choice))
            current = current - size[:, None] * step
            logits = logits - size[:, None] * direction
            chosen_loss = tf.gather(tf.transpose(candidate_loss), choice, batch_dims=1)
            loss = tf.where(converged, loss, chosen_loss)
            return (steps + 1, current, logits, loss, *newton_direction(current, logits, converged))

        return tf.while_loop(
            # The last loop variable says who has converged.
            lambda steps, *rest: (steps < MAX_NEWTON_STEPS) & ~tf.reduce_all(rest[-1]),
            newton_step,
            (tf.constant(0), current, logits, loss, step, decrease, converged),
        )[1]
