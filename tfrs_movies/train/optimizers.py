"""Optimizers whose step costs O(batch) on embedding tables: a lazy Adam.

An embedding lookup's gradient is a ``tf.IndexedSlices`` holding only the rows of the batch.
tf-keras 2.20's Adam turns that back into O(table) work every step: it decays the first and
second moments of every row (``m.assign_add(-m * (1 - beta_1))``) and applies a dense
``variable.assign_sub``. :class:`LazyAdam` updates only the rows in the batch, as TensorFlow
Addons' LazyAdam and large-scale recommenders do; Adagrad's sparse step is already row-wise.
"""

from __future__ import annotations

import tensorflow as tf


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam that updates only the rows a sparse gradient touches.

    Dense gradients (the rating head's MLP, projections) get Adam's update unchanged. For a
    ``tf.IndexedSlices`` gradient (an embedding table), only the rows in its indices have their
    moments decayed and updated and their values moved; the other rows and their moments are
    left as they are. For a gradient touching every row this is Adam's step exactly. The slot
    variables are Adam's (``m``, ``v``), so checkpoints hold the optimizer state as usual and a
    resumed run continues exactly.

    Args:
        learning_rate: the step size.
        **kwargs: Adam's other arguments (``beta_1``, ``beta_2``, ``epsilon``, ...); ``amsgrad``
            is not supported.

    Raises:
        ValueError: ``amsgrad=True``.
    """

    def __init__(self, learning_rate: float = 0.001, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("LazyAdam does not support amsgrad")
        kwargs.setdefault("name", "LazyAdam")
        super().__init__(learning_rate=learning_rate, **kwargs)

    def update_step(self, gradient, variable):
        """Adam's update, restricted to the gradient's rows when it is sparse.

        ``apply_gradients`` has already summed the values of repeated indices
        (``_deduplicate_sparse_grad``), so each row appears once in ``gradient.indices``.
        """
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        lr = tf.cast(self.learning_rate, variable.dtype)
        local_step = tf.cast(self.iterations + 1, variable.dtype)
        beta_1_power = tf.pow(tf.cast(self.beta_1, variable.dtype), local_step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, variable.dtype), local_step)
        alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        epsilon = self.epsilon
        if self.adaptive_epsilon:
            epsilon = self.epsilon * tf.sqrt(1 - beta_2_power)
        var_key = self._var_key(variable)
        m = self._momentums[self._index_dict[var_key]]
        v = self._velocities[self._index_dict[var_key]]
        rows, values = gradient.indices, gradient.values
        # Same arithmetic as Adam's dense branch, on the gathered rows only.
        m_rows = tf.gather(m, rows)
        m_rows = m_rows + (values - m_rows) * (1 - self.beta_1)
        v_rows = tf.gather(v, rows)
        v_rows = v_rows + (tf.square(values) - v_rows) * (1 - self.beta_2)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices((m_rows * alpha) / (tf.sqrt(v_rows) + epsilon), rows))
