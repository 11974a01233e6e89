"""A faithful re-implementation of the TFRS multitask tutorial, the training benchmark's yardstick.

String features looked up by ``StringLookup`` inside the towers, ``FactorizedTopK`` metrics, the
tutorial's sizes and optimizer: "ours vs. the tutorial" is then measured in one process on one
machine (``benchmark_training.py``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1; must load before TensorFlow)

# isort: split
import tensorflow as tf
import tensorflow_recommenders as tfrs
from common import timed

from tfrs_movies.data.schema import Ratings


def tutorial_datasets(ratings: Ratings, seed: int = 42, train_fraction: float = 0.8):
    """The TFRS multitask tutorial's input pipeline over a :class:`Ratings` table.

    String-feature dicts (``user_id``, ``movie_title``, ``user_rating``) shuffled once with a
    seed, the first 80% for training; the movie dataset is every movie title.

    Args:
        ratings: the dataset.
        seed: the shuffle seed.
        train_fraction: share of the shuffled ratings used for training.

    Returns:
        (train dataset of dicts, unbatched; movies dataset of titles; unique user ids; unique
        movie titles).
    """
    examples = ratings.examples()
    features = {
        "user_id": examples["user_id"].astype(str),
        "movie_title": examples["movie_title"].astype(str),
        "user_rating": examples["user_rating"].astype(np.float32),
    }
    data = tf.data.Dataset.from_tensor_slices(features)
    shuffled = data.shuffle(len(features["user_id"]), seed=seed, reshuffle_each_iteration=False)
    train = shuffled.take(int(train_fraction * len(features["user_id"])))
    titles = np.unique(ratings.movie_titles.astype(str))
    movies = tf.data.Dataset.from_tensor_slices(titles)
    return train, movies, np.unique(features["user_id"]), titles


class TutorialModel(tfrs.models.Model):
    """The TFRS multitask tutorial's ``MovielensModel`` (towers of StringLookup + Embedding).

    Args:
        unique_user_ids, unique_movie_titles: the lookup vocabularies.
        movies: dataset of movie titles, the FactorizedTopK candidates.
        rating_weight, retrieval_weight: loss weights.
        embedding_dim: tower output size (32 in the tutorial).
        compute_metrics: compute the tasks' metrics during training (the tutorial does; False
            passes ``compute_metrics=False`` to both tasks).
    """

    def __init__(
        self,
        unique_user_ids: np.ndarray,
        unique_movie_titles: np.ndarray,
        movies: tf.data.Dataset,
        rating_weight: float = 1.0,
        retrieval_weight: float = 1.0,
        embedding_dim: int = 32,
        compute_metrics: bool = True,
    ) -> None:
        super().__init__()
        self.movie_model = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=unique_movie_titles, mask_token=None),
                tf.keras.layers.Embedding(len(unique_movie_titles) + 1, embedding_dim),
            ]
        )
        self.user_model = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=unique_user_ids, mask_token=None),
                tf.keras.layers.Embedding(len(unique_user_ids) + 1, embedding_dim),
            ]
        )
        self.rating_model = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(256, activation="relu"),
                tf.keras.layers.Dense(128, activation="relu"),
                tf.keras.layers.Dense(1),
            ]
        )
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )
        self.retrieval_task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=movies.batch(128).map(self.movie_model))
        )
        self.rating_weight = rating_weight
        self.retrieval_weight = retrieval_weight
        self.update_metrics = compute_metrics

    def call(self, features):
        user_embeddings = self.user_model(features["user_id"])
        movie_embeddings = self.movie_model(features["movie_title"])
        return (
            user_embeddings,
            movie_embeddings,
            self.rating_model(tf.concat([user_embeddings, movie_embeddings], axis=1)),
        )

    def compute_loss(self, features, training=False):
        ratings = features.pop("user_rating")
        user_embeddings, movie_embeddings, rating_predictions = self(features)
        rating_loss = self.rating_task(
            labels=ratings, predictions=rating_predictions, compute_metrics=self.update_metrics
        )
        retrieval_loss = self.retrieval_task(
            user_embeddings, movie_embeddings, compute_metrics=self.update_metrics
        )
        return self.rating_weight * rating_loss + self.retrieval_weight * retrieval_loss


class EpochTimes(tf.keras.callbacks.Callback):
    """Appends each epoch's wall-clock seconds to ``store``."""

    def __init__(self, store: list[float]) -> None:
        super().__init__()
        self.store = store
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.store.append(time.perf_counter() - self._started)


def run_tutorial(
    ratings: Ratings,
    compute_metrics: bool,
    epochs: int = 3,
    batch_size: int = 8192,
    seed: int = 42,
) -> dict[str, Any]:
    """Trains the tutorial model as the tutorial does and measures it.

    Args:
        ratings: the dataset.
        compute_metrics: compute the tasks' metrics in training steps (the tutorial does).
        epochs, batch_size: as in the tutorial (3, 8192).
        seed: Keras random seed and shuffle seed.

    Returns:
        dict with ``examples_per_s`` (all epochs, first one with tracing included),
        ``steady_examples_per_s`` (epochs after the first), ``fit_seconds``, ``prep_seconds``,
        ``wall_seconds`` and ``epoch_seconds``.
    """
    tf.keras.utils.set_random_seed(seed)
    times: dict[str, float] = {}
    with timed(times, "prep"):
        train, movies, users, titles = tutorial_datasets(ratings, seed=seed)
        num_train = int(0.8 * ratings.num_ratings)
        cached_train = train.shuffle(100_000).batch(batch_size).cache()
        model = TutorialModel(users, titles, movies, compute_metrics=compute_metrics)
        model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    epoch_seconds: list[float] = []
    with timed(times, "fit"):
        model.fit(cached_train, epochs=epochs, verbose=0, callbacks=[EpochTimes(epoch_seconds)])
    steady = sum(epoch_seconds[1:])
    return {
        "examples_per_s": num_train * epochs / times["fit"],
        "steady_examples_per_s": num_train * (epochs - 1) / steady if steady else None,
        "fit_seconds": times["fit"],
        "fit_cpu_seconds": times["fit_cpu"],
        "examples_per_cpu_s": num_train * epochs / times["fit_cpu"],
        "prep_seconds": times["prep"],
        "wall_seconds": times["fit"] + times["prep"],
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
    }
