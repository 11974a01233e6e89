"""Training: fit the multitask model and turn a config into a complete run directory.

``fit`` holds the model's construction and the Keras ``fit`` call over seeded epochs (with the
callbacks of ``callbacks``: validation metrics, early stopping, resumable checkpoints, the
epoch line; and of ``reporting``: progress within epochs, TensorBoard); ``run`` is the
pipeline config -> prepared data -> fit -> evaluation -> export -> finalized run directory;
``distributed`` picks the tf.distribute strategy from ``TF_CONFIG``;
``optimizers`` holds the lazy Adam that updates only the embedding rows in the batch.
Metric definitions live in :mod:`tfrs_movies.evaluation`, and nothing here uses the Recommender.
"""

from tfrs_movies.train.run import RunResult, train_and_evaluate

__all__ = ["RunResult", "train_and_evaluate"]
