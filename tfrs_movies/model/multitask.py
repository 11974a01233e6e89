"""The joint model: shared towers, a rating head, a retrieval task and a rating task, wired.

``loss = retrieval_weight * L_retrieval + rating_weight * L_rating + penalty``, where the
penalty is the L2 on the embedding rows the batch looks up (:mod:`tfrs_movies.model.penalties`):
with row-sparse gradients and :class:`tfrs_movies.train.optimizers.LazyAdam`, a step's cost
grows with the batch, not with the vocabularies. (The catalogue softmax, for catalogues small
enough to score whole, moves and penalizes every movie row each step.)

With ``model.ensemble_size`` members, each task loss is the sum of the members' own losses:
member k trains on its slices of the towers' outputs, with its own retrieval biases, softmax
and rating head, as if alone; the served score and rating are the members' sum and mean.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies.config import ModelConfig, validate_loss_weights
from tfrs_movies.data.features import FeatureTables
from tfrs_movies.hardware import native_bfloat16
from tfrs_movies.model.heads import RatingHead, StatelessDropout
from tfrs_movies.model.penalties import count_weights, inverse_presence
from tfrs_movies.model.tasks import CatalogueRetrieval
from tfrs_movies.model.towers import MovieTower, UserTower

# model.ensemble_size when unset: members with the catalogue softmax (small catalogues).
CATALOGUE_ENSEMBLE_SIZE = 4


def catalogue_scores_dtype(config: ModelConfig, negatives: str) -> str:
    """The number type of the catalogue softmax's score product: ``config.catalogue_scores_dtype``,
    or for ``"auto"``, ``"bfloat16"`` when ``negatives == "catalogue"``, the CPU multiplies
    bfloat16 in hardware (:func:`tfrs_movies.hardware.native_bfloat16`) and no GPU is visible
    (not measured there), else ``"float32"``."""
    if config.catalogue_scores_dtype != "auto":
        return config.catalogue_scores_dtype
    native = negatives == "catalogue" and native_bfloat16()
    return "bfloat16" if native and not tf.config.list_physical_devices("GPU") else "float32"


def ensemble_size(config: ModelConfig, negatives: str) -> int:
    """The number of ensemble members: ``config.ensemble_size``, or when it is None,
    :data:`CATALOGUE_ENSEMBLE_SIZE` with ``negatives == "catalogue"`` and 1 otherwise."""
    if config.ensemble_size is not None:
        return config.ensemble_size
    return CATALOGUE_ENSEMBLE_SIZE if negatives == "catalogue" else 1


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
            penalty on a batch's rows estimates the whole-table L2 without bias; the user
            embeddings' terms are also weighted by ``(n + 1) ** config.user_l2_count_power``
            (mean 1; :func:`~tfrs_movies.model.penalties.count_weights`). None: weight 1.
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
        self.user_embedding_penalty_weights = None
        if user_frequencies is not None and batch_size is not None:
            # Each replica penalizes the rows of its own share of the batch.
            replica_batch = max(1, batch_size // tf.distribute.get_strategy().num_replicas_in_sync)
            presence = inverse_presence(user_frequencies, replica_batch)
            self.user_penalty_weights = tf.Variable(
                presence, trainable=False, name="user_penalty_weights"
            )
            self.user_embedding_penalty_weights = tf.Variable(
                presence * count_weights(user_frequencies, config.user_l2_count_power),
                trainable=False,
                name="user_embedding_penalty_weights",
            )
            self.movie_penalty_weights = tf.Variable(
                inverse_presence(movie_frequencies, replica_batch),
                trainable=False,
                name="movie_penalty_weights",
            )
        self.num_movies = num_movies
        self.retrieval_weight = float(retrieval_weight)
        self.rating_weight = float(rating_weight)
        negatives = config.retrieval_negatives
        if negatives == "auto":
            small = num_movies <= config.catalogue_softmax_max_movies
            negatives = "catalogue" if small else "in_batch"
        self.negatives = negatives
        config = dataclasses.replace(config, ensemble_size=ensemble_size(config, negatives))
        self.user_tower = UserTower(num_users, tables, config, name="user_tower")
        self.movie_tower = MovieTower(num_movies, tables, config, name="movie_tower")
        self.rating_head = RatingHead(num_users, num_movies, global_mean, config, seed)
        # Its own random stream: the rating head's dropout draws from ``seed``.
        self.query_dropout = StatelessDropout(config.query_dropout, seed + 1, name="query_dropout")
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
            scores_dtype=catalogue_scores_dtype(config, negatives),
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
        member_predictions = self.rating_head.member_predictions(
            user_index, movie_index, user_vectors, movie_vectors, step=step, training=training
        )
        labels = features["rating"][:, None]
        if self.rating_head.members == 1:
            rating_loss = self.rating_task(
                labels=labels, predictions=member_predictions, compute_metrics=not training
            )
        else:
            # Each member's own squared error, summed (as the members' retrieval losses); the
            # metrics are the ensemble's, on the members' mean.
            rating_loss = tf.add_n(
                [
                    self.rating_task(labels=labels, predictions=member, compute_metrics=False)
                    for member in tf.split(member_predictions, self.rating_head.members, axis=1)
                ]
            )
            if not training:
                self.rating_task(
                    labels=labels,
                    predictions=tf.reduce_mean(member_predictions, axis=1, keepdims=True),
                    compute_metrics=True,
                )
        # Each ensemble member has its own softmax; the retrieval loss is their sum, so that
        # every member gets the gradient it would get trained alone.
        member_queries = self.user_tower.member_vectors(queries)
        if training and self.query_dropout.threshold:
            # Dropout in the retrieval loss only, on the queries' free coordinates: the last one
            # is the constant 1 that carries the retrieval bias.
            free, ones = tf.split(member_queries, [-1, 1], axis=-1)
            member_queries = tf.concat(
                [self.query_dropout(free, step=step, training=True), ones], axis=-1
            )
        if self.negatives == "catalogue":
            member_catalogues = self.movie_tower.member_vectors(tf.range(self.num_movies + 1))
            if query_rows is not None:  # all members in one batched product
                retrieval_loss = self.retrieval_task.catalogue_loss(
                    member_queries, member_catalogues, movie_index, query_rows=query_rows
                )
            else:
                retrieval_loss = tf.add_n(
                    [
                        self.retrieval_task.catalogue_loss(member, catalogue, movie_index)
                        for member, catalogue in zip(
                            tf.unstack(member_queries), tf.unstack(member_catalogues), strict=True
                        )
                    ]
                )
        else:
            # In-batch sampled softmax, corrected for popularity-proportional sampling (logQ).
            sampling_probability = tf.gather(self.sampling_probability, movie_index)
            member_movies = (
                movie_vectors[None]
                if self.movie_tower.members == 1
                else self.movie_tower.member_vectors(movie_index)
            )
            retrieval_loss = tf.add_n(
                [
                    self.retrieval_task(
                        member_users,
                        member_movie_vectors,
                        candidate_sampling_probability=sampling_probability,
                        candidate_ids=movie_index,
                        compute_metrics=False,
                        compute_batch_metrics=False,
                    )
                    for member_users, member_movie_vectors in zip(
                        tf.unstack(member_queries), tf.unstack(member_movies), strict=True
                    )
                ]
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
        if self.negatives == "catalogue":
            # The catalogue softmax moves every movie row every step, as a negative: penalize
            # the whole movie table, each row once. Batch rows alone would leave the rows of
            # movies without training ratings (never a positive) unpenalized, drifting without
            # bound, and the rating head extrapolates from them. Each replica adds its share.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            movie_penalty = self.movie_tower.penalty(tf.range(self.num_movies + 1)) / replicas
        else:
            movie_penalty = self.movie_tower.penalty(movie_index, movies)
        return (
            self.user_tower.penalty(user_index, self.user_embedding_penalty_weights)
            + movie_penalty
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
