"""The rating head: a star rating from the two towers' outputs, with stateless dropout."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_movies.config import ModelConfig
from tfrs_movies.model.penalties import row_l2

# Dropout draws 16 random bits per element: each 32-bit draw of the generator serves two.
DROPOUT_LEVELS = 2**16


class StatelessDropout(tf.keras.layers.Layer):
    """Dropout whose mask is a pure function of (seed, step).

    Keras' Dropout draws from a stateful generator that restarts when a run is resumed from a
    checkpoint; deriving the mask from the optimizer step makes a resumed run bit-identical to an
    uninterrupted one.

    An element is dropped when its 16 random bits fall below ``round(rate * 2**16)``: the
    rate is met within 2**-17, and half as many 32-bit draws are made as with one uniform float
    per element (the draw was the rating head's costliest op on ml-100k). Kept elements are
    scaled by the inverse of the realized keep probability, so the expectation is exact.
    """

    def __init__(self, rate: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), int(seed)
        # At most 2**16 - 1: a rate within 2**-17 of 1 keeps one element in 2**16.
        self.threshold = min(round(self.rate * DROPOUT_LEVELS), DROPOUT_LEVELS - 1)

    def call(self, inputs, step=None, training=False):
        if not training or self.threshold == 0 or step is None:
            return inputs
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        size = tf.size(inputs)
        words = tf.random.stateless_uniform(
            [(size + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32
        )
        halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
        keep = tf.reshape(halves, tf.shape(inputs)) >= tf.constant(self.threshold, tf.uint16)
        scale = DROPOUT_LEVELS / (DROPOUT_LEVELS - self.threshold)
        # A scalar zero broadcasts: no (batch, ...) tensor of zeros to fill each step.
        return tf.where(keep, inputs * scale, 0.0)


class MemberDense(tf.keras.layers.Layer):
    """``members`` independent dense layers applied side by side.

    Call args:
        inputs: (batch, members, in) float32, member k's inputs in ``[:, k]``.

    Returns:
        (batch, members, units) float32: ``activation(inputs[:, k] @ kernel[k] + bias[k])``.
    """

    def __init__(self, members: int, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.members, self.units = int(members), int(units)
        self.activation = tf.keras.activations.get(activation)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        # Glorot uniform of each member's own (fan_in, units) layer.
        limit = float(np.sqrt(6.0 / (fan_in + self.units)))
        self.kernel = self.add_weight(
            "kernel",
            [self.members, fan_in, self.units],
            initializer=tf.keras.initializers.RandomUniform(-limit, limit),
        )
        self.bias = self.add_weight("bias", [self.members, self.units], initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        return self.activation(tf.einsum("bki,kio->bko", inputs, self.kernel) + self.bias)


class RatingHead(tf.keras.Model):
    """Predicts a star rating from the two towers' outputs.

    What classic collaborative filtering knows is built in: the global mean of the training
    ratings, a user bias and a movie bias (L2-regularized by :meth:`penalty`), plus an MLP over
    ``[user, movie, user * movie]`` for the interaction. With ``model.ensemble_size`` > 1, each
    member has its own biases and its own MLP (:class:`MemberDense`) on its own slices of the
    towers' outputs, and the prediction is the members' mean.

    Call args:
        user_index, movie_index: (batch,) int vocabulary indices (for the biases).
        user_vectors, movie_vectors: (batch, members * dim + 1) tower outputs.

    Returns:
        (batch,) float32 predicted ratings (:meth:`member_predictions`: (batch, members)).
    """

    def __init__(self, num_users, num_movies, global_mean, config: ModelConfig, seed: int, **kw):
        super().__init__(**kw)
        self.l2, self.members = config.embedding_l2, config.ensemble_size
        self.global_mean = tf.Variable(float(global_mean), trainable=False, name="global_mean")
        self.user_bias = tf.keras.layers.Embedding(
            num_users + 1, self.members, "zeros", name="user_bias"
        )
        self.movie_bias = tf.keras.layers.Embedding(
            num_movies + 1, self.members, "zeros", name="movie_bias"
        )
        self.dropout = StatelessDropout(config.rating_dropout, seed)
        units = config.rating_hidden_units
        self.member_dim = config.embedding_dim
        if self.members == 1:
            layers = [tf.keras.layers.Dense(u, activation="relu") for u in units]
            layers.append(tf.keras.layers.Dense(1))
        else:
            # The head's total width stays as configured: each member gets its share.
            layers = [MemberDense(self.members, max(1, u // self.members), "relu") for u in units]
            layers.append(MemberDense(self.members, 1))
        self.mlp = tf.keras.Sequential(layers, name="mlp")

    def member_predictions(
        self, user_index, movie_index, user_vectors, movie_vectors, step=None, training=False
    ):
        """(batch, members) each member's predicted ratings (the call's args)."""
        if self.members == 1:
            interaction = tf.concat([user_vectors, movie_vectors, user_vectors * movie_vectors], 1)
        else:
            # Member k reads only its own slices (not the shared last column: it has its own
            # rating biases): (batch, members, 3 * member_dim).
            shape = [-1, self.members, self.member_dim]
            # A split, not a slice: each slice's gradient (StridedSliceGrad) took about 0.9 ms
            # in a profile of the step at batch 2048; a split's gradient is a concatenation.
            width = self.members * self.member_dim
            users = tf.reshape(tf.split(user_vectors, [width, 1], axis=1)[0], shape)
            movies = tf.reshape(tf.split(movie_vectors, [width, 1], axis=1)[0], shape)
            interaction = tf.concat([users, movies, users * movies], 2)
        interaction = self.dropout(interaction, step=step, training=training)
        mlp_output = tf.reshape(self.mlp(interaction), [-1, self.members])
        return (
            self.global_mean
            + self.user_bias(user_index)
            + self.movie_bias(movie_index)
            + mlp_output
        )

    def call(self, user_index, movie_index, user_vectors, movie_vectors, step=None, training=False):
        return tf.reduce_mean(
            self.member_predictions(
                user_index, movie_index, user_vectors, movie_vectors, step=step, training=training
            ),
            axis=1,
        )

    def serving_weights(self) -> dict[str, object]:
        """The head as one plain MLP with one output, for numpy re-scoring.

        The members' MLPs are laid out block-diagonally over the towers' full outputs, and
        their biases and last-layer outputs averaged (the prediction is their mean). With one
        member these are the variables themselves.

        Returns:
            ``{"global_mean", "user_bias" (num_users + 1, 1), "movie_bias"
            (num_movies + 1, 1), "mlp_kernels", "mlp_biases"}`` (lists in layer order).
        """
        layers = self.mlp.layers
        if self.members == 1:
            kernels = [layer.kernel for layer in layers]
            biases = [layer.bias for layer in layers]
            user_bias, movie_bias = self.user_bias.embeddings, self.movie_bias.embeddings
        else:
            kernels, biases = self._block_diagonal_mlp()
            user_bias = tf.reduce_mean(self.user_bias.embeddings, axis=1, keepdims=True)
            movie_bias = tf.reduce_mean(self.movie_bias.embeddings, axis=1, keepdims=True)
        return {
            "global_mean": self.global_mean,
            "user_bias": user_bias,
            "movie_bias": movie_bias,
            "mlp_kernels": kernels,
            "mlp_biases": biases,
        }

    def _block_diagonal_mlp(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The members' MLPs as one MLP over ``[user, movie, user * movie]`` of the towers'
        full outputs, whose one output is the members' mean."""
        members, dim = self.members, self.member_dim
        layers = self.mlp.layers
        first = layers[0].kernel.numpy()  # (members, 3 * dim, units)
        width = members * dim + 1  # one tower output; its last column is not read
        kernel = np.zeros((3 * width, members * first.shape[2]), np.float32)
        for k in range(members):
            for part in range(3):  # user, movie, product
                rows = slice(part * width + k * dim, part * width + (k + 1) * dim)
                kernel[rows, k * first.shape[2] : (k + 1) * first.shape[2]] = first[
                    k, part * dim : (part + 1) * dim
                ]
        kernels, biases = [kernel], [layers[0].bias.numpy().reshape(-1)]
        for layer in layers[1:]:
            member_kernels = layer.kernel.numpy()  # (members, in, out)
            _, fan_in, units = member_kernels.shape
            kernel = np.zeros((members * fan_in, members * units), np.float32)
            for k in range(members):
                kernel[k * fan_in : (k + 1) * fan_in, k * units : (k + 1) * units] = member_kernels[
                    k
                ]
            kernels.append(kernel)
            biases.append(layer.bias.numpy().reshape(-1))
        # The last layer has one output per member; their mean is the prediction.
        kernels[-1] = kernels[-1].mean(axis=1, keepdims=True)
        biases[-1] = biases[-1].mean(keepdims=True)
        return kernels, biases

    def penalty(
        self,
        user_index,
        movie_index,
        user_weights: tf.Variable | None = None,
        movie_weights: tf.Variable | None = None,
    ) -> tf.Tensor:
        """Scalar L2 (``model.embedding_l2``) on the bias rows of the batch's users and movies,
        each row's term weighted by ``user_weights`` / ``movie_weights`` when given."""
        return row_l2(self.user_bias.embeddings, user_index, self.l2, user_weights) + row_l2(
            self.movie_bias.embeddings, movie_index, self.l2, movie_weights
        )
