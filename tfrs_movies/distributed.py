"""tf.distribute strategies for training: one process, several local devices, several workers.

``make_strategy(name)`` maps ``train.strategy`` to a :class:`tf.distribute.Strategy`:

- ``one_device``: :class:`tf.distribute.OneDeviceStrategy` on the first GPU, else the CPU.
- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over the local GPUs (the CPU if none).
- ``multi_worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, the cluster and this
  process's role read from the ``TF_CONFIG`` environment variable.
- ``auto``: ``multi_worker`` when ``TF_CONFIG`` names more than one worker, ``mirrored`` with
  more than one local GPU, else TensorFlow's default (no-op) strategy.

Under ``multi_worker`` every worker runs the same program; the chief (``chief`` task, else
``worker`` 0) writes the run directory, the others write into a temporary :func:`worker_dir`
that is deleted afterwards (TensorFlow's recommended pattern: saving may involve collective
ops, so every worker saves, but only the chief's files are kept).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tfrs_movies.errors import ConfigError

TF_CONFIG = "TF_CONFIG"
# MultiWorkerMirroredStrategy can be created once per process (it configures the collective
# runtime); later calls return the same instance.
_MULTI_WORKER: Any = None
_REGISTERED: set[Path] = set()


def read_tf_config(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Parses and validates ``TF_CONFIG``.

    Args:
        environ: the environment to read (default ``os.environ``).

    Returns:
        The parsed TF_CONFIG, or None when it is unset or empty.

    Raises:
        ConfigError: TF_CONFIG is not JSON, or its cluster or task is malformed.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, "").strip()
    if not text:
        return None
    example = (
        'e.g. {"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{TF_CONFIG} is not valid JSON ({error}); {example}") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError(
            f"{TF_CONFIG} has no 'cluster' mapping of task types to addresses; {example}"
        )
    for task_type, addresses in cluster.items():
        if not (
            isinstance(addresses, list)
            and addresses
            and all(isinstance(a, str) and ":" in a for a in addresses)
        ):
            raise ConfigError(
                f"{TF_CONFIG} cluster[{task_type!r}] must be a non-empty list of 'host:port' "
                f"strings, got {addresses!r}"
            )
    if not ({"chief", "worker"} & cluster.keys()):
        raise ConfigError(f"{TF_CONFIG} cluster names no 'worker' (or 'chief') tasks; {example}")
    task = tf_config.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigError(f"{TF_CONFIG} has no 'task' with a 'type' and an 'index'; {example}")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise ConfigError(
            f"{TF_CONFIG} task type {task_type!r} is not in the cluster ({sorted(cluster)})"
        )
    if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ConfigError(
            f"{TF_CONFIG} task index {index!r} is out of range for the "
            f"{len(cluster[task_type])} {task_type!r} address(es)"
        )
    return tf_config


def num_workers(tf_config: dict[str, Any] | None) -> int:
    """How many training workers (``chief`` + ``worker`` tasks) a TF_CONFIG names (1 if None)."""
    if not tf_config:
        return 1
    cluster = tf_config["cluster"]
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def make_strategy(name: str):
    """The tf.distribute strategy for ``train.strategy``; see the module docstring.

    Create it before any other TensorFlow op runs in the process (MultiWorkerMirroredStrategy
    must configure the collective runtime first).

    Args:
        name: one of ``auto``, ``one_device``, ``mirrored``, ``multi_worker``.

    Returns:
        The strategy.

    Raises:
        ConfigError: unknown name; ``multi_worker`` without a valid TF_CONFIG.
    """
    import tensorflow as tf

    global _MULTI_WORKER
    if name == "auto":
        tf_config = read_tf_config()
        if num_workers(tf_config) > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "multi_worker":
        if read_tf_config() is None:
            raise ConfigError(
                f"train.strategy=multi_worker needs the {TF_CONFIG} environment variable: the "
                "cluster's worker addresses and this process's task, e.g. "
                '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                '"task": {"type": "worker", "index": 0}} (see README, "Training on a cluster")'
            )
        if _MULTI_WORKER is None:
            _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
        return _MULTI_WORKER
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy(
            devices=[d.name for d in gpus] if gpus else ["/cpu:0"]
        )
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    raise ConfigError(
        f"train.strategy must be one of auto, one_device, mirrored, multi_worker; got {name!r}"
    )


def _task(strategy) -> tuple[str | None, int | None, dict[str, Any]]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None, {}
    spec = resolver.cluster_spec().as_dict() if resolver.cluster_spec() else {}
    return resolver.task_type, resolver.task_id, spec


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` spans more than one worker process."""
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def is_chief(strategy) -> bool:
    """Whether this process writes the run directory: always, except non-chief workers.

    The chief is the ``chief`` task when the cluster has one, else ``worker`` 0.
    """
    if not is_multi_worker(strategy):
        return True
    task_type, task_id, spec = _task(strategy)
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in spec


def worker_dir(path: str | Path, strategy) -> Path:
    """Where this process writes what belongs at ``path``.

    The chief writes to ``path`` itself; any other worker writes to a per-task temporary
    directory (``<tmp>/tfrs_movies-<type><id>-<pid>/<name>``), which the caller removes with
    :func:`remove_worker_dir` when done.
    """
    path = Path(path)
    if is_chief(strategy):
        return path
    task_type, task_id, _ = _task(strategy)
    root = Path(tempfile.gettempdir()) / f"tfrs_movies-{task_type}{task_id}-{os.getpid()}"
    if root not in _REGISTERED:  # removed at exit too, should the worker fail before cleanup
        _REGISTERED.add(root)
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root / path.name


def remove_worker_dir(path: str | Path, strategy) -> None:
    """Deletes a non-chief worker's temporary directory for ``path`` (no-op on the chief)."""
    if not is_chief(strategy):
        shutil.rmtree(worker_dir(path, strategy).parent, ignore_errors=True)


def all_workers_ok(strategy, ok: bool = True) -> bool:
    """A barrier: blocks until every worker calls it; True if every worker passed ``ok``.

    Collective: under a multi-worker strategy every worker must call it the same number of
    times. Without one it returns ``ok``.
    """
    if not is_multi_worker(strategy):
        return ok
    import tensorflow as tf

    failures = 0.0 if ok else 1.0
    per_replica = strategy.run(lambda: tf.constant(failures))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return float(total.numpy()) == 0.0
