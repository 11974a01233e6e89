"""The tf.Modules the run's SavedModels are saved from: their signatures are the run's contract.

:func:`index_module` is ``retrieval_index/`` and ``exact_index/`` (user ids, query vectors or a
person's ratings in; scores and movie ids out); :func:`ranking_module` is ``ranking_model/``
(predicted ratings). :mod:`tfrs_movies.export` builds, traces and saves them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_movies.data.vocab import Vocabulary
from tfrs_movies.fold_in_graph import FoldInGraph

RATINGS_SIGNATURE = [
    tf.TensorSpec([None, None], tf.string, name="movie_ids"),
    tf.TensorSpec([None, None], tf.float32, name="ratings"),
]  # a person's ratings: movie ids padded with "", and their star ratings


def index_module(
    users: Vocabulary,
    movies: Vocabulary,
    user_tower,
    layer,
    dim: int,
    fold_in: FoldInGraph,
    popularity: np.ndarray,
):
    """A tf.Module: string user ids (or query vectors, or a person's ratings) in, (scores,
    movie ids) out.

    ``rows``/``search_rows`` return positions in ``vocab/movies.csv`` instead of ids, so that
    the Recommender never handles strings for the hundreds of candidates per user.
    ``fold_in`` and ``recommend_for_ratings`` serve people who were not in training.
    """

    class IndexModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.user_lookup = tf.keras.layers.StringLookup(**users.string_lookup_config())
            self.movie_lookup = tf.keras.layers.StringLookup(**movies.string_lookup_config())
            self.user_tower = user_tower
            self.index = layer
            self.fold_in_graph = fold_in
            self.movie_ids = tf.constant(movies.ids.astype(str))
            self.popularity = tf.constant(np.asarray(popularity, np.float32))

        @tf.function(input_signature=RATINGS_SIGNATURE)
        def fold_in(self, movie_ids, ratings):
            return self.fold_in_graph(self.movie_lookup(movie_ids), ratings)

        @tf.function(input_signature=RATINGS_SIGNATURE)
        def recommend_for_ratings(self, movie_ids, ratings):
            vectors, known = self.fold_in_graph(self.movie_lookup(movie_ids), ratings)
            scores, ids = self.index(vectors)
            # A person with no known movie gets the most-rated movies, scored by their counts.
            popular_scores, popular_rows = tf.math.top_k(self.popularity, tf.shape(ids)[1])
            scores = tf.where(known[:, None], scores, popular_scores[None, :])
            ids = tf.where(known[:, None], ids, tf.gather(self.movie_ids, popular_rows)[None, :])
            # The person's own movies, and ScaNN's padding (NaN scores), go last as ("", -inf).
            rated = tf.reduce_any(ids[:, :, None] == movie_ids[:, None, :], axis=2)
            scores = tf.where(rated | tf.math.is_nan(scores), -np.inf, scores)
            order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
            scores = tf.gather(scores, order, batch_dims=1)
            ids = tf.where(scores > -np.inf, tf.gather(ids, order, batch_dims=1), "")
            return scores, ids

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def rows(self, user_ids):
            scores, movie_ids = self.__call__(user_ids)
            return scores, Vocabulary.row_of_index(self.movie_lookup(movie_ids))

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="queries")])
        def search_rows(self, queries):
            scores, movie_ids = self.index(queries)
            return scores, Vocabulary.row_of_index(self.movie_lookup(movie_ids))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def __call__(self, user_ids):
            return self.index(self.user_tower(self.user_lookup(user_ids)))

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="queries")])
        def search(self, queries):
            return self.index(queries)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def query_vectors(self, user_ids):
            return self.user_tower(self.user_lookup(user_ids))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")])
        def serve(self, user_ids):
            scores, movie_ids = self.__call__(user_ids)
            return {"scores": scores, "movie_ids": movie_ids}

    return IndexModule()


def _as_variable(value) -> tf.Variable:
    if isinstance(value, tf.Variable):
        return value
    return tf.Variable(value, trainable=False)


def ranking_module(users: Vocabulary, movies: Vocabulary, model, dim: int, fold_in: FoldInGraph):
    """A tf.Module: (user id, movie id) strings in, predicted ratings out; or a person's ratings
    and candidate movie ids in (``score_for_ratings``, for people who were not in training).

    Its ``rating_head_weights`` attribute names the rating head's variables (``global_mean``,
    ``user_bias`` and ``movie_bias`` (n + 1, 1) by vocabulary index, ``mlp_kernels`` and
    ``mlp_biases`` in layer order), so that :mod:`tfrs_movies.recommend.rescoring` can copy
    the head into numpy without depending on Keras' internal object names.
    """

    class RankingModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.user_lookup = tf.keras.layers.StringLookup(**users.string_lookup_config())
            self.movie_lookup = tf.keras.layers.StringLookup(**movies.string_lookup_config())
            self.user_tower = model.user_tower
            self.movie_tower = model.movie_tower
            self.rating_head = model.rating_head
            self.fold_in_graph = fold_in
            # Variables, so that the SavedModel stores them; an ensemble's head is combined
            # into one plain MLP first (RatingHead.serving_weights).
            self.rating_head_weights = tf.nest.map_structure(
                _as_variable, model.rating_head.serving_weights()
            )

        def _rate(self, user_index, user_vectors, movie_ids):
            # movie_ids: [B, C]; every user's row is scored against its own C candidates.
            shape = tf.shape(movie_ids)
            movie_index = self.movie_lookup(tf.reshape(movie_ids, [-1]))
            repeat = lambda t: tf.repeat(t, shape[1], axis=0)  # noqa: E731
            ratings = self.rating_head(
                repeat(user_index), movie_index, repeat(user_vectors), self.movie_tower(movie_index)
            )
            return tf.reshape(ratings, shape)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([None], tf.string, name="movie_ids"),
            ]
        )
        def __call__(self, user_ids, movie_ids):
            return self.score_candidates(user_ids, movie_ids[:, None])[:, 0]

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([None, None], tf.string, name="movie_ids"),
            ]
        )
        def score_candidates(self, user_ids, movie_ids):
            user_index = self.user_lookup(user_ids)
            return self._rate(user_index, self.user_tower(user_index), movie_ids)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, dim], tf.float32, name="user_vectors"),
                tf.TensorSpec([None, None], tf.string, name="movie_ids"),
            ]
        )
        def score_vectors(self, user_vectors, movie_ids):
            # A user outside training: their vector is given; their rating bias is the OOV row's.
            user_index = tf.zeros(tf.shape(user_vectors)[:1], tf.int64)
            return self._rate(user_index, user_vectors, movie_ids)

        @tf.function(
            input_signature=[
                *RATINGS_SIGNATURE,
                tf.TensorSpec([None, None], tf.string, name="candidate_ids"),
            ]
        )
        def score_for_ratings(self, movie_ids, ratings, candidate_ids):
            # The person's vector from their ratings; their rating bias (the model has none
            # for them) is their mean residual on the movies they rated, as the Recommender's.
            rated_index = self.movie_lookup(movie_ids)
            vectors, _ = self.fold_in_graph(rated_index, ratings)
            user_index = tf.zeros(tf.shape(vectors)[:1], tf.int64)
            mask = tf.cast(rated_index > 0, tf.float32)
            residuals = (ratings - self._rate(user_index, vectors, movie_ids)) * mask
            offset = tf.reduce_sum(residuals, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
            return self._rate(user_index, vectors, candidate_ids) + offset[:, None]

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([None], tf.string, name="movie_ids"),
            ]
        )
        def serve(self, user_ids, movie_ids):
            return {"predicted_rating": self.__call__(user_ids, movie_ids)}

    return RankingModule()
