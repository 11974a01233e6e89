"""The rating head: a star rating from the two towers' outputs, with stateless dropout."""

from __future__ import annotations

import tensorflow as tf

from tfrs_movies.config import ModelConfig
from tfrs_movies.model.penalties import row_l2


class StatelessDropout(tf.keras.layers.Layer):
    """Dropout whose mask is a pure function of (seed, step).

    Keras' Dropout draws from a stateful generator that restarts when a run is resumed from a
    checkpoint; deriving the mask from the optimizer step makes a resumed run bit-identical to an
    uninterrupted one.
    """

    def __init__(self, rate: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), int(seed)

    def call(self, inputs, step=None, training=False):
        if not training or self.rate == 0 or step is None:
            return inputs
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        keep = tf.random.stateless_uniform(tf.shape(inputs), seed=seed) >= self.rate
        return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))


class RatingHead(tf.keras.Model):
    """Predicts a star rating from the two towers' outputs.

    What classic collaborative filtering knows is built in: the global mean of the training
    ratings, a user bias and a movie bias (L2-regularized by :meth:`penalty`), plus an MLP over
    ``[user, movie, user * movie]`` for the interaction.

    Call args:
        user_index, movie_index: (batch,) int vocabulary indices (for the biases).
        user_vectors, movie_vectors: (batch, dim + 1) tower outputs.

    Returns:
        (batch,) float32 predicted ratings.
    """

    def __init__(self, num_users, num_movies, global_mean, config: ModelConfig, seed: int, **kw):
        super().__init__(**kw)
        self.l2 = config.embedding_l2
        self.global_mean = tf.Variable(float(global_mean), trainable=False, name="global_mean")
        self.user_bias = tf.keras.layers.Embedding(num_users + 1, 1, "zeros", name="user_bias")
        self.movie_bias = tf.keras.layers.Embedding(num_movies + 1, 1, "zeros", name="movie_bias")
        self.dropout = StatelessDropout(config.rating_dropout, seed)
        self.mlp = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(units, activation="relu")
                for units in config.rating_hidden_units
            ]
            + [tf.keras.layers.Dense(1)],
            name="mlp",
        )

    def call(self, user_index, movie_index, user_vectors, movie_vectors, step=None, training=False):
        interaction = tf.concat([user_vectors, movie_vectors, user_vectors * movie_vectors], 1)
        interaction = self.dropout(interaction, step=step, training=training)
        return (
            self.global_mean
            + tf.squeeze(self.user_bias(user_index), 1)
            + tf.squeeze(self.movie_bias(movie_index), 1)
            + tf.squeeze(self.mlp(interaction), 1)
        )

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
