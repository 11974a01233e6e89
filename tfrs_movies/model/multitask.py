"""The joint model: shared towers, a rating head, a retrieval task and a rating task, wired.

``loss = retrieval_weight * L_retrieval + rating_weight * L_rating + penalty``, where the
penalty is the L2 on the embedding rows the batch looks up (:mod:`tfrs_movies.model.penalties`):
with row-sparse gradients and :class:`tfrs_movies.train.optimizers.LazyAdam`, a step's cost
grows with the batch, not with the vocabularies.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies.config import ModelConfig, validate_loss_weights
from tfrs_movies.data.features import FeatureTables
from tfrs_movies.model.heads import RatingHead
from tfrs_movies.model.penalties import inverse_presence
from tfrs_movies.model.tasks import CatalogueRetrieval
from tfrs_movies.model.towers import MovieTower, UserTower


class MovieLensModel(tfrs.models.Model):
    """Two towers shared by a retrieval task and a rating task, combined by loss weights.

    Args:
        num_users, num_movies: vocabulary sizes (index 0 is out of vocabulary in both).
        tables: side-feature tables for the towers.
        global_mean: mean training rating, the rating head's starting point.
        movie_frequencies: (num_movies + 1,) training ratings per movie, for the logQ correction
            of in-batch negatives.
        config: model configuration.
        retrieval_weight, rating_weight: loss weights (finite, >= 0, not both 0).
        seed: dropout seed.
        user_frequencies: (num_users + 1,) training ratings per user. With ``batch_size``,
            each user's and movie's L2 term is weighted by 1 / P(it is in a batch), so the
            penalty on a batch's rows estimates the whole-table L2 without bias; None: weight 1.
        batch_size: the training batch size (global; divided among the replicas here).

    Inputs to ``compute_loss``: a dict with ``user`` and ``movie`` (batch,) int vocabulary
    indices, ``rating`` (batch,) float32 and, with ``use_timestamp``, ``timestamp`` (batch,).

    Raises:
        ConfigError: invalid loss weights.
    """

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        tables: FeatureTables,
        global_mean: float,
        movie_frequencies: np.ndarray,
        config: ModelConfig,
        retrieval_weight: float = 1.0,
        rating_weight: float = 1.0,
        seed: int = 0,
        user_frequencies: np.ndarray | None = None,
        batch_size: int | None = None,
    ):
        super().__init__()
        validate_loss_weights(retrieval_weight, rating_weight)
        self.user_penalty_weights = self.movie_penalty_weights = None
        if user_frequencies is not None and batch_size is not None:
            # Each replica penalizes the rows of its own share of the batch.
            replica_batch = max(1, batch_size // tf.distribute.get_strategy().num_replicas_in_sync)
            self.user_penalty_weights = tf.Variable(
                inverse_presence(user_frequencies, replica_batch),
                trainable=False,
                name="user_penalty_weights",
            )
            self.movie_penalty_weights = tf.Variable(
                inverse_presence(movie_frequencies, replica_batch),
                trainable=False,
                name="movie_penalty_weights",
            )
        self.num_movies = num_movies
        self.retrieval_weight = float(retrieval_weight)
        self.rating_weight = float(rating_weight)
        self.user_tower = UserTower(num_users, tables, config, name="user_tower")
        self.movie_tower = MovieTower(num_movies, tables, config, name="movie_tower")
        self.rating_head = RatingHead(num_users, num_movies, global_mean, config, seed)
        negatives = config.retrieval_negatives
        if negatives == "auto":
            small = num_movies <= config.catalogue_softmax_max_movies
            negatives = "catalogue" if small else "in_batch"
        self.negatives = negatives
        probabilities = np.asarray(movie_frequencies, np.float64) + 1.0  # +1: OOV row, no log(0)
        self.sampling_probability = tf.Variable(
            (probabilities / probabilities.sum()).astype(np.float32),
            trainable=False,
            name="sampling_probability",
        )
        # Losses are summed here and divided by the batch size in task_losses, so that the loss
        # weights mean the same at any batch size and under tf.distribute replication.
        self.retrieval_task = CatalogueRetrieval(
            # The default loss: a summed softmax cross-entropy from logits.
            temperature=config.temperature,
            remove_accidental_hits=negatives == "in_batch",
            name="retrieval",
        )
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
            name="rating",
        )
        self.retrieval_loss_tracker = tf.keras.metrics.Mean("retrieval_loss")
        self.rating_loss_tracker = tf.keras.metrics.Mean("rating_loss")

    def catalogue_vectors(self) -> tf.Tensor:
        """(num_movies + 1, dim + 1) movie-tower outputs for every vocabulary row, OOV included."""
        return self.movie_tower(tf.range(self.num_movies + 1))

    def task_losses(self, features, training: bool = False):
        """Computes both task losses for a batch.

        Returns:
            (retrieval_loss, rating_loss) scalars, each unweighted.
        """
        user_index = tf.cast(features["user"], tf.int32)
        movie_index = tf.cast(features["movie"], tf.int32)
        if self.negatives == "catalogue" and not self.user_tower.use_timestamp:
            # The query is a function of the user alone: score each distinct user against the
            # catalogue once (see CatalogueRetrieval.catalogue_loss).
            distinct_users = tf.unique(user_index)
            queries, query_rows = self.user_tower(distinct_users.y), distinct_users.idx
            user_vectors = tf.gather(queries, query_rows)
        else:
            user_vectors = self.user_tower(user_index, features.get("timestamp"))
            queries, query_rows = user_vectors, None
        movie_vectors = self.movie_tower(movie_index)
        # A tensor, not the variable: Keras' SavedModel tracing cannot retrace variable arguments.
        step = (
            tf.identity(self.optimizer.iterations)
            if training and self.optimizer is not None
            else None
        )
        predictions = self.rating_head(
            user_index, movie_index, user_vectors, movie_vectors, step=step, training=training
        )
        rating_loss = self.rating_task(
            labels=features["rating"][:, None],
            predictions=predictions[:, None],
            compute_metrics=not training,
        )
        if self.negatives == "catalogue":
            retrieval_loss = self.retrieval_task.catalogue_loss(
                queries, self.catalogue_vectors(), movie_index, query_rows=query_rows
            )
        else:
            # In-batch sampled softmax, corrected for popularity-proportional sampling (logQ).
            retrieval_loss = self.retrieval_task(
                user_vectors,
                movie_vectors,
                candidate_sampling_probability=tf.gather(self.sampling_probability, movie_index),
                candidate_ids=movie_index,
                compute_metrics=False,
                compute_batch_metrics=False,
            )
        batch_size = tf.cast(tf.shape(user_index)[0], tf.float32)
        retrieval_loss, rating_loss = retrieval_loss / batch_size, rating_loss / batch_size
        self.retrieval_loss_tracker.update_state(retrieval_loss)
        self.rating_loss_tracker.update_state(rating_loss)
        return retrieval_loss, rating_loss

    def penalty(self, features) -> tf.Tensor:
        """Scalar L2 on the embedding and bias rows of the batch's users and movies."""
        user_index = tf.cast(features["user"], tf.int32)
        movie_index = tf.cast(features["movie"], tf.int32)
        users, movies = self.user_penalty_weights, self.movie_penalty_weights
        return (
            self.user_tower.penalty(user_index, users)
            + self.movie_tower.penalty(movie_index, movies)
            + self.rating_head.penalty(user_index, movie_index, users, movies)
        )

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        retrieval_loss, rating_loss = self.task_losses(features, training=training)
        loss = self.retrieval_weight * retrieval_loss + self.rating_weight * rating_loss
        # Replica gradients are summed by tf.distribute: each replica contributes its share of
        # the batch-mean losses, and the penalty on the rows of its own part of the batch.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas + self.penalty(features)

    def predict_ratings(self, user_index, movie_index) -> tf.Tensor:
        """(batch,) predicted ratings for pairs of vocabulary indices."""
        user_vectors = self.user_tower(user_index)
        movie_vectors = self.movie_tower(movie_index)
        return self.rating_head(user_index, movie_index, user_vectors, movie_vectors)
