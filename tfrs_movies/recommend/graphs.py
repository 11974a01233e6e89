"""Restored SavedModel functions called straight through their one traced graph.

The Recommender calls the run's exported index functions many times a request; TensorFlow's
generic call path (polymorphic dispatch, argument binding) costs more Python per call than some
of the graphs themselves. :func:`single_graph` returns the cheapest callable that runs the same
graph with the same outputs.
"""

from __future__ import annotations

import tensorflow as tf


def single_graph(function):
    """A restored SavedModel function's only concrete function, called through
    :class:`DirectCall` (the same graph without the polymorphic dispatch and the argument
    binding); the function itself when it has several or is not restored (None stays None)."""
    graphs = getattr(function, "concrete_functions", None)
    if graphs is None or len(graphs) != 1:
        return function
    return DirectCall.wrap(graphs[0])


class DirectCall:
    """Calls a restored concrete function's graph with its input tensors, in order.

    ``ConcreteFunction.__call__`` binds the arguments to the function's signature, checks for
    gradient tapes and distribution contexts, then runs the graph: about 55 us of Python a call
    (measured, TF 2.20, ml-100k: search_rows took 131-135 us a call, 74-79 us run
    directly). Serving passes tensors of the signature's dtypes and records no gradients, so
    it runs the graph directly; the outputs are the same tensors. Use :meth:`wrap`.
    """

    def __init__(self, function, graph, captured: list):
        self.function = function  # the wrapped ConcreteFunction
        self._graph = graph  # its AtomicFunction: flat tensors in, structured outputs out
        self._captured = captured  # the SavedModel's variables and constants, fixed

    @classmethod
    def wrap(cls, function):
        """A :class:`DirectCall` of ``function`` (a restored ConcreteFunction), or the
        function itself if TensorFlow's internals it relies on are missing (another
        TensorFlow version) or it captures something resolved at call time."""
        graph = getattr(function, "_inference_function", None)
        captured = getattr(function, "_captured_inputs", None)
        if (
            graph is None
            or not hasattr(graph, "call_preflattened")
            or captured is None
            or any(callable(value) or isinstance(value, tf.Variable) for value in captured)
        ):
            return function
        return cls(function, graph, list(function.captured_inputs))

    def __call__(self, *tensors: tf.Tensor):
        """The function's outputs for its positional input tensors (the signature's dtypes;
        no gradient tape may watch them)."""
        return self._graph.call_preflattened([*tensors, *self._captured])
