"""L2 penalties on the embedding rows a batch uses, so that a step's cost is O(batch).

A Keras ``embeddings_regularizer`` penalizes the whole table every step: its gradient is dense,
so every row of every table is read and written each step however small the batch. Here the
penalty covers only the distinct rows the batch looks up; rows absent from a batch are neither
penalized nor touched. Each row's term can be weighted by ``1 / P(row in a batch)``
(:func:`inverse_presence`), which makes the batch penalty an unbiased estimate of the
whole-table L2: rare rows, seldom in a batch, are penalized harder when they are. Where every
row is in every batch (small side-feature tables) this is the whole-table L2.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def inverse_presence(counts: np.ndarray, batch_size: int) -> np.ndarray:
    """``1 / P(row is in a batch)`` per row, for batches drawn from examples with ``counts``.

    Args:
        counts: (num_rows,) training examples per row (user or movie).
        batch_size: examples per batch (per replica under tf.distribute).

    Returns:
        (num_rows,) float32 weights >= 1; rows without examples (never in a batch) get 1.
    """
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total == 0:
        return np.ones(counts.shape, np.float32)
    presence = -np.expm1(min(batch_size, total) * np.log1p(-counts / total))
    return np.where(counts > 0, 1.0 / np.maximum(presence, 1e-12), 1.0).astype(np.float32)


def count_weights(counts: np.ndarray, power: float) -> np.ndarray:
    """``(count + 1) ** power`` per row, scaled to mean 1 over the rows.

    Args:
        counts: (num_rows,) training examples per row.
        power: 0 gives every row weight 1; > 0 weighs rows with more examples more.

    Returns:
        (num_rows,) float32 weights with mean 1.
    """
    weights = (np.asarray(counts, np.float64) + 1.0) ** power
    return (weights / weights.mean()).astype(np.float32)


def row_l2(
    table: tf.Variable,
    rows: tf.Tensor,
    strength: float,
    row_weights: tf.Variable | None = None,
) -> tf.Tensor:
    """``strength * sum of squares`` of the distinct rows of ``table`` indexed by ``rows``.

    Args:
        table: (num_rows, dim) float32 embedding table.
        rows: int indices of any shape (repeats count once).
        strength: the L2 coefficient; 0 gives a constant 0 (no gradient, no work).
        row_weights: (num_rows,) float32 weight of each row's term, or None for 1.

    Returns:
        Scalar float32 penalty; its gradient is a ``tf.IndexedSlices`` over the distinct rows.
    """
    if not strength:
        return tf.constant(0.0)
    distinct = tf.unique(tf.reshape(tf.cast(rows, tf.int32), [-1])).y
    squares = tf.reduce_sum(tf.square(tf.gather(table, distinct)), axis=1)
    if row_weights is not None:
        squares *= tf.gather(row_weights, distinct)
    return strength * tf.reduce_sum(squares)


def dense_l2(weights: tf.Variable, strength: float) -> tf.Tensor:
    """``strength * sum of squares`` of a whole (small, non-embedding) weight matrix."""
    if not strength:
        return tf.constant(0.0)
    return strength * tf.reduce_sum(tf.square(weights))
