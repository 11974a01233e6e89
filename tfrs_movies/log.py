"""What tfrs_movies prints: its own progress lines, and no native log lines unless asked.

Progress: library functions take ``log: Log = print_line`` so that callers (the CLI, sweeps,
tests) can redirect or silence progress without touching global logging configuration.

Native logs: TensorFlow's C++ runtime and ScaNN write lines of their own to stderr (``failed
call to cuInit ... (303)`` on every machine without a GPU; ScaNN's ``I0000 ... partitioner``
lines, written through abseil before ``absl::InitializeLog`` with a ``WARNING: All log messages
before absl::InitializeLog()`` banner). They say nothing a user can act on, so
``import tfrs_movies`` hides them with :func:`set_native_logs`; ``tfrs-movies --verbose`` or
``TFRS_MOVIES_VERBOSE=1`` keeps them.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
from collections.abc import Callable

Log = Callable[[str], None]

VERBOSE_ENV = "TFRS_MOVIES_VERBOSE"
_TF_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# abseil's absl::LogSeverityAtLeast::kError: INFO and WARNING lines are dropped, errors stay.
_ABSL_ERROR = 2
# absl::SetMinLogLevel(absl::LogSeverityAtLeast) of the abseil release TensorFlow 2.20 links.
# ScaNN's op library resolves its abseil symbols against libtensorflow_framework, so setting the
# level there also quiets ScaNN. Another TensorFlow build may name it differently: then the
# lookup fails and the lines simply stay.
_ABSL_SET_MIN_LOG_LEVEL = "_ZN4absl12lts_2025012714SetMinLogLevelENS0_18LogSeverityAtLeastE"


# Whether TF_CPP_MIN_LOG_LEVEL was set by set_native_logs (a user's own setting is kept).
_tf_level_is_ours = False


def print_line(message: str) -> None:
    """Prints one progress line to stdout, flushed (progress must show up in piped logs)."""
    print(message, flush=True)


def silent(message: str) -> None:
    """Discards a progress line (for callers that want no output)."""


def verbose_requested() -> bool:
    """Whether ``$TFRS_MOVIES_VERBOSE`` asks for native log lines (1, true, yes, on)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def set_native_logs(verbose: bool) -> None:
    """Hides (or shows) TensorFlow's and ScaNN's native log lines.

    Python warnings, errors and tfrs_movies' own output are not affected. Must run before
    TensorFlow is imported to take full effect: TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` when it
    loads (set here to 3, or to 1 when verbose, unless the environment already sets it), and
    abseil's level is lowered right after TensorFlow loads (abseil has no environment variable).

    Args:
        verbose: show the lines (TensorFlow still hides its INFO lines, which only describe the
            CPU build, as before quiet mode existed).
    """
    global _tf_level_is_ours
    for finder in [f for f in sys.meta_path if isinstance(f, _AfterTensorFlowImport)]:
        sys.meta_path.remove(finder)
    if "tensorflow" in sys.modules:
        logging.getLogger("tensorflow").setLevel(logging.INFO if verbose else logging.ERROR)
        if not verbose:
            _quiet_abseil()
        return
    if _TF_LEVEL_ENV not in os.environ or _tf_level_is_ours:
        os.environ[_TF_LEVEL_ENV] = "1" if verbose else "3"
        _tf_level_is_ours = True
    # TensorFlow's Python-side warnings (e.g. ScaNN's index rebuilds "triggered tf.function
    # retracing" while export tunes it) go through the "tensorflow" logger.
    logging.getLogger("tensorflow").setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        sys.meta_path.insert(0, _AfterTensorFlowImport())


def _quiet_abseil() -> None:
    import ctypes

    library = os.path.join(
        os.path.dirname(sys.modules["tensorflow"].__file__), "libtensorflow_framework.so.2"
    )
    try:
        set_min_log_level = getattr(ctypes.CDLL(library), _ABSL_SET_MIN_LOG_LEVEL)
    except (OSError, AttributeError):
        return  # not this TensorFlow build: native lines show, nothing else changes
    set_min_log_level.argtypes = [ctypes.c_int]
    set_min_log_level.restype = None
    set_min_log_level(_ABSL_ERROR)


class _AfterTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs :func:`_quiet_abseil` once, right after ``import tensorflow`` completes.

    Installed instead of importing TensorFlow eagerly, which would cost data-only commands
    seconds of start-up.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from recursing
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def load_then_quiet(module) -> None:
            load(module)
            _quiet_abseil()

        spec.loader.exec_module = load_then_quiet
        return spec
