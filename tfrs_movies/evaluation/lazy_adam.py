"""Adam for numpy tables that updates only the rows a minibatch touches (for biased MF)."""

from __future__ import annotations

import numpy as np


class LazyAdam:
    """Adam on the rows of one table, updating only the rows a minibatch touches.

    Rows absent from a batch keep their moments unchanged ("lazy" Adam, like TensorFlow's
    sparse Adam updates), so a step costs O(batch) rather than O(table).

    Args:
        table: (N, D) float32 parameters, updated in place.
        learning_rate: Adam step size.
    """

    def __init__(self, table: np.ndarray, learning_rate: float) -> None:
        self.table = table
        self.learning_rate = learning_rate
        self.first_moment = np.zeros_like(table)
        self.second_moment = np.zeros_like(table)
        self.steps = 0

    def step(self, rows: np.ndarray, row_grads: np.ndarray) -> None:
        """Applies per-example gradients ``row_grads`` (B, D) of the table rows ``rows`` (B,)."""
        beta1, beta2, epsilon = 0.9, 0.999, 1e-8
        unique_rows, inverse = np.unique(rows, return_inverse=True)
        # Sum the gradients of repeated rows before the update, as for a dense gradient.
        grad = np.zeros((unique_rows.shape[0], self.table.shape[1]), np.float32)
        np.add.at(grad, inverse, row_grads)
        self.steps += 1
        m = self.first_moment[unique_rows] * beta1 + (1 - beta1) * grad
        v = self.second_moment[unique_rows] * beta2 + (1 - beta2) * grad * grad
        self.first_moment[unique_rows] = m
        self.second_moment[unique_rows] = v
        correction = np.sqrt(1 - beta2**self.steps) / (1 - beta1**self.steps)
        self.table[unique_rows] -= (self.learning_rate * correction) * m / (np.sqrt(v) + epsilon)
