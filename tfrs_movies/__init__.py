"""tfrs_movies: a multitask two-tower movie recommender on TensorFlow Recommenders.

Importing this package prepares TensorFlow before it loads: it sets ``TF_USE_LEGACY_KERAS=1``,
because TFRS 0.7.7 is written against Keras 2 (the ``tf-keras`` package), and hides the native
log lines of TensorFlow and ScaNN (see :mod:`tfrs_movies.log`; ``TFRS_MOVIES_VERBOSE=1`` keeps
them). TensorFlow itself is imported lazily: ``tfrs-movies data info`` and other data-only paths
never load it.

The public API: :class:`Config` (with :func:`load_config`), :func:`train_and_evaluate` (config ->
finalized run directory), :class:`Recommender` and :func:`load_index` (use a run directory), and
:func:`load_source` (any data source as canonical ratings).
"""

from __future__ import annotations

import os
import sys

from tfrs_movies.log import set_native_logs, verbose_requested

__version__ = "0.1.0"

_KERAS_ADVICE = (
    "tfrs_movies needs Keras 2 (tf-keras) because TensorFlow Recommenders 0.7.7 does, but "
    "TensorFlow was already imported with Keras 3. Import tfrs_movies before tensorflow, or set "
    "the environment variable TF_USE_LEGACY_KERAS=1 before starting Python "
    "(e.g. `export TF_USE_LEGACY_KERAS=1`)."
)


def _ensure_legacy_keras() -> None:
    """Select Keras 2 for TensorFlow, or fail clearly when it is too late to do so.

    Raises:
        ImportError: TensorFlow is already imported and bound to Keras 3.
    """
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    tf = sys.modules["tensorflow"]
    keras_version = getattr(getattr(tf, "keras", None), "__version__", "")
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True") or str(
        keras_version
    ).startswith("3"):
        raise ImportError(_KERAS_ADVICE + f" (found keras {keras_version or 'unknown'})")


_ensure_legacy_keras()
set_native_logs(verbose=verbose_requested())

_LAZY = {
    "Config": ("tfrs_movies.config", "Config"),
    "load_config": ("tfrs_movies.config", "load_config"),
    "load_source": ("tfrs_movies.data", "load_source"),
    "train_and_evaluate": ("tfrs_movies.train", "train_and_evaluate"),
    "Recommender": ("tfrs_movies.recommend", "Recommender"),
    "load_index": ("tfrs_movies.rundir", "load_index"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    # Lazy so that `import tfrs_movies` stays cheap and data-only commands never load TensorFlow.
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'tfrs_movies' has no attribute {name!r}")
