"""TensorFlow's CPU thread pools for a training process (``train.intra_op_threads``).

By default TensorFlow runs as many ops at once as there are cores (inter-op pool) and splits
each op over every core (intra-op pool). A training step of these models is many small ops in
two mostly independent chains (the retrieval softmax, the rating head); on the 2-core machine
the README times, running two ops at once on half the cores each took an ml-100k step from
40.1-43.1 ms to 35.0-38.0 ms (the whole train command 4-6 s faster), with bit-identical
results (op determinism fixes each kernel's arithmetic, whatever its thread count).

The pools can only be set before TensorFlow starts in the process; a process that has already
run TensorFlow (a test session, a notebook that trained before) keeps the pools it has.
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_movies.hardware import available_cores

# Ops run at once under the default (None): the step's two chains.
CONCURRENT_OPS = 2


def thread_pools(intra_op_threads: int | None, cores: int) -> tuple[int, int] | None:
    """The (inter-op, intra-op) pool sizes for ``train.intra_op_threads``.

    Args:
        intra_op_threads: None: :data:`CONCURRENT_OPS` ops at once, each on
            ``cores // CONCURRENT_OPS`` threads (at least 1); 0: TensorFlow's defaults;
            k > 0: k threads per op, with TensorFlow's default inter-op pool.
        cores: the cores available.

    Returns:
        (inter_op, intra_op), where 0 means "TensorFlow's default"; None for TensorFlow's
        defaults in both.
    """
    if intra_op_threads is None:
        return CONCURRENT_OPS, max(1, cores // CONCURRENT_OPS)
    if intra_op_threads == 0:
        return None
    return 0, intra_op_threads


def configure_threads(intra_op_threads: int | None) -> bool:
    """Sizes TensorFlow's CPU pools as :func:`thread_pools` says, if TensorFlow has not started.

    Returns:
        True when the pools are as asked (set now, or already so), False when TensorFlow had
        already started in this process with other pools (they are kept).
    """
    pools = thread_pools(intra_op_threads, available_cores())
    if pools is None:
        return True
    inter_op, intra_op = pools
    threading = tf.config.threading
    try:
        # Setting a pool to its current size is allowed after start; any other size raises.
        threading.set_inter_op_parallelism_threads(inter_op)
        threading.set_intra_op_parallelism_threads(intra_op)
    except RuntimeError:
        return False
    return True
