"""The user tower and the movie tower: plain Keras models from vocabulary indices to vectors.

Both towers output ``ensemble_size * embedding_dim + 1`` numbers: each ensemble member's
``embedding_dim`` slice in turn, then one more. The user tower's last output is the constant 1
and the movie tower's last output is the sum of the members' learned per-movie biases, so the
retrieval score ``user · movie`` is ``<user embedding, movie embedding> + movie bias``, the sum
of the members' scores: a popularity prior that a dot-product index (ScaNN, brute force) serves
with no special case. ``member_vectors`` gives each member's own (slice, 1) / (slice, bias).

Each tower's ``penalty`` is the L2 on the embedding rows a batch looks up (see
:mod:`tfrs_movies.model.penalties`), which the joint model adds to its loss.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_movies.config import ModelConfig
from tfrs_movies.data.features import AGE_BUCKETS, FeatureTables
from tfrs_movies.model.penalties import dense_l2, row_l2


def _table(values: np.ndarray, name: str) -> tf.Variable:
    # Non-trainable variables rather than constants: they are tracked, saved in checkpoints and
    # SavedModels, and not embedded in every traced graph.
    return tf.Variable(values, trainable=False, name=name)


def _embedding(rows: int, dim: int, name: str, init: str = "uniform"):
    # No embeddings_regularizer: its gradient is dense over the table (see ``penalty``).
    return tf.keras.layers.Embedding(rows, dim, embeddings_initializer=init, name=name)


def _side_by_side(vectors: tf.Tensor, last_columns: tf.Tensor, members: int) -> tf.Tensor:
    """(batch, members * dim) slices and (batch, members) last columns -> (members, batch,
    dim + 1): member k's slice followed by its own last column."""
    parts = tf.stack(tf.split(vectors, members, axis=1))
    return tf.concat([parts, tf.transpose(last_columns)[:, :, None]], axis=2)


class UserTower(tf.keras.Model):
    """Maps user vocabulary indices (and optionally timestamps) to query vectors.

    Args:
        num_users: vocabulary size without the OOV row; index 0 is out of vocabulary.
        tables: side-feature tables (demographics, timestamp statistics).
        config: which side features to use, embedding size and L2.

    Call args:
        user_index: (batch,) int32/int64 vocabulary indices.
        timestamp: (batch,) float seconds, used when ``config.use_timestamp``; None means "now",
            i.e. the latest training time.

    Returns:
        (batch, ensemble_size * embedding_dim + 1) float32; the last column is 1.
    """

    def __init__(self, num_users: int, tables: FeatureTables, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.members, self.l2 = config.ensemble_size, config.embedding_l2
        dim = config.embedding_dim * config.ensemble_size
        self.use_demographics = config.use_demographics and tables.has_demographics
        self.use_timestamp = config.use_timestamp
        self.user_embedding = _embedding(num_users + 1, dim, "user_id")
        if self.use_demographics:
            self.age_table = _table(tables.user_age, "age_table")
            self.gender_table = _table(tables.user_gender, "gender_table")
            self.occupation_table = _table(tables.user_occupation, "occupation_table")
            self.age_embedding = _embedding(len(AGE_BUCKETS) + 1, dim, "age")
            self.gender_embedding = _embedding(3, dim, "gender")
            self.occupation_embedding = _embedding(
                int(tables.user_occupation.max()) + 2, dim, "occupation"
            )
        if self.use_timestamp:
            self.timestamp_mean = float(tables.timestamp_mean)
            self.timestamp_std = float(tables.timestamp_std)
            # "Now" for serving: one standard deviation past the training mean is near its end.
            self.timestamp_projection = tf.keras.layers.Dense(dim, use_bias=False, name="timestamp")

    def call(self, user_index, timestamp=None):
        user_index = tf.cast(user_index, tf.int32)
        vector = self.user_embedding(user_index)
        if self.use_demographics:
            vector += self.age_embedding(tf.gather(self.age_table, user_index))
            vector += self.gender_embedding(tf.gather(self.gender_table, user_index))
            vector += self.occupation_embedding(tf.gather(self.occupation_table, user_index))
        if self.use_timestamp:
            if timestamp is None:
                standardized = tf.ones_like(user_index, tf.float32)
            else:
                standardized = (tf.cast(timestamp, tf.float32) - self.timestamp_mean) / (
                    self.timestamp_std
                )
            vector += self.timestamp_projection(standardized[:, None])
        return tf.concat([vector, tf.ones_like(vector[:, :1])], axis=1)

    def member_vectors(self, query_vectors: tf.Tensor) -> tf.Tensor:
        """Splits (batch, members * dim + 1) outputs of this tower into each ensemble member's
        queries: (members, batch, dim + 1), each ending in the constant 1."""
        if self.members == 1:
            return query_vectors[None]
        ones = tf.ones([tf.shape(query_vectors)[0], self.members])
        return _side_by_side(query_vectors[:, :-1], ones, self.members)

    def penalty(self, user_index, row_weights: tf.Variable | None = None) -> tf.Tensor:
        """Scalar L2 (``model.embedding_l2``) on the embedding rows ``user_index`` looks up.

        ``row_weights`` (num_users + 1,) weighs the user-id rows (see
        :func:`~tfrs_movies.model.penalties.row_l2`); side-feature rows have weight 1.
        """
        user_index = tf.cast(user_index, tf.int32)
        penalty = row_l2(self.user_embedding.embeddings, user_index, self.l2, row_weights)
        if self.use_demographics:
            for table, embedding in (
                (self.age_table, self.age_embedding),
                (self.gender_table, self.gender_embedding),
                (self.occupation_table, self.occupation_embedding),
            ):
                penalty += row_l2(embedding.embeddings, tf.gather(table, user_index), self.l2)
        return penalty


class MovieTower(tf.keras.Model):
    """Maps movie vocabulary indices to candidate vectors.

    Args:
        num_movies: vocabulary size without the OOV row; index 0 is out of vocabulary.
        tables: side-feature tables (genres, release year, title words).
        config: which side features to use, embedding size and L2.

    Call args:
        movie_index: (batch,) int vocabulary indices.

    Returns:
        (batch, ensemble_size * embedding_dim + 1) float32; the last column is the movie's
        retrieval bias (the members' sum).
    """

    def __init__(self, num_movies: int, tables: FeatureTables, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.members, self.l2 = config.ensemble_size, config.embedding_l2
        dim = config.embedding_dim * config.ensemble_size
        self.use_genres, self.use_year = config.use_genres, config.use_year
        self.use_title = config.use_title and tables.num_title_words > 0
        self.movie_embedding = _embedding(num_movies + 1, dim, "movie_id")
        # One retrieval bias per member; the served vector carries their sum.
        self.bias = _embedding(num_movies + 1, self.members, "retrieval_bias", init="zeros")
        if self.use_genres:
            self.genre_table = _table(tables.movie_genres, "genre_table")
            self.genre_projection = tf.keras.layers.Dense(dim, use_bias=False, name="genres")
        if self.use_year:
            self.year_table = _table(tables.movie_year, "year_table")
            self.year_embedding = _embedding(tables.num_years, dim, "year")
        if self.use_title:
            self.title_table = _table(tables.movie_title_tokens, "title_table")
            self.word_embedding = _embedding(tables.num_title_words + 1, dim, "title_words")

    def call(self, movie_index):
        vector, biases = self.embedding_parts(movie_index)
        return tf.concat([vector, tf.reduce_sum(biases, axis=1, keepdims=True)], axis=1)

    def member_vectors(self, movie_index) -> tf.Tensor:
        """(members, batch, dim + 1): each ensemble member's candidate vectors, its slice of
        the embedding and its own retrieval bias (with one member, ``call``'s output)."""
        if self.members == 1:
            return self(movie_index)[None]
        return _side_by_side(*self.embedding_parts(movie_index), self.members)

    def embedding_parts(self, movie_index) -> tuple[tf.Tensor, tf.Tensor]:
        """(batch, members * dim) embedding sums and (batch, members) retrieval biases."""
        movie_index = tf.cast(movie_index, tf.int32)
        vector = self.movie_embedding(movie_index)
        if self.use_genres:
            vector += self.genre_projection(tf.gather(self.genre_table, movie_index))
        if self.use_year:
            vector += self.year_embedding(tf.gather(self.year_table, movie_index))
        if self.use_title:
            tokens = tf.gather(self.title_table, movie_index)
            mask = tf.cast(tokens > 0, tf.float32)[:, :, None]
            words = self.word_embedding(tokens) * mask
            vector += tf.reduce_sum(words, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        return vector, self.bias(movie_index)

    def penalty(self, movie_index, row_weights: tf.Variable | None = None) -> tf.Tensor:
        """Scalar L2 (``model.embedding_l2``) on the rows ``movie_index`` looks up.

        ``row_weights`` (num_movies + 1,) weighs the movie-id rows; side-feature rows have
        weight 1. The retrieval bias is not penalized; the genre projection is, whole.
        """
        movie_index = tf.cast(movie_index, tf.int32)
        penalty = row_l2(self.movie_embedding.embeddings, movie_index, self.l2, row_weights)
        if self.use_genres:
            penalty += dense_l2(self.genre_projection.kernel, self.l2)
        if self.use_year:
            years = tf.gather(self.year_table, movie_index)
            penalty += row_l2(self.year_embedding.embeddings, years, self.l2)
        if self.use_title:
            tokens = tf.gather(self.title_table, movie_index)
            penalty += row_l2(self.word_embedding.embeddings, tokens, self.l2)
        return penalty
