"""tf.distribute strategies for training: one process, several local devices, several workers.

``make_strategy(name)`` maps ``train.strategy`` to a :class:`tf.distribute.Strategy`:

- ``one_device``: :class:`tf.distribute.OneDeviceStrategy` on the first GPU, else the CPU.
- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over the local GPUs (the CPU if none).
- ``multi_worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, the cluster and this
  process's role read from the ``TF_CONFIG`` environment variable by TensorFlow's
  :class:`tf.distribute.cluster_resolver.TFConfigClusterResolver`.
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

import tensorflow as tf

from tfrs_movies.errors import ConfigError

TF_CONFIG = "TF_CONFIG"
_EXAMPLE = (
    'e.g. {"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)
# MultiWorkerMirroredStrategy can be created once per process (it configures the collective
# runtime); later calls return the same instance.
_MULTI_WORKER: tf.distribute.Strategy | None = None
_REGISTERED: set[Path] = set()


def read_tf_config() -> tf.distribute.cluster_resolver.TFConfigClusterResolver | None:
    """Reads ``TF_CONFIG`` through TensorFlow's resolver and checks that it makes sense.

    TensorFlow accepts a malformed TF_CONFIG silently (a missing task, an index out of range)
    and fails later, deep inside the collective runtime; these checks fail first, saying what
    to fix.

    Returns:
        The resolver (cluster spec, task type and id), or None when TF_CONFIG is unset or empty.

    Raises:
        ConfigError: TF_CONFIG is not JSON, or its cluster or task is malformed.
    """
    if not os.environ.get(TF_CONFIG, "").strip():
        return None
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        spec = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, resolver.task_id
    except json.JSONDecodeError as error:
        raise ConfigError(f"{TF_CONFIG} is not valid JSON ({error}); {_EXAMPLE}") from None
    except TypeError as error:  # ClusterSpec: a job's tasks are not a list (or dict)
        raise ConfigError(
            f"{TF_CONFIG} cluster entries must be non-empty lists of 'host:port' strings "
            f"({error}); {_EXAMPLE}"
        ) from None
    except ValueError as error:  # the task index is not an integer
        raise ConfigError(f"{TF_CONFIG} task is malformed ({error}); {_EXAMPLE}") from None
    if not spec:
        raise ConfigError(
            f"{TF_CONFIG} has no 'cluster' mapping of task types to addresses; {_EXAMPLE}"
        )
    for job, addresses in spec.items():
        addresses = list(addresses.values()) if isinstance(addresses, dict) else addresses
        if not (addresses and all(isinstance(a, str) and ":" in a for a in addresses)):
            raise ConfigError(
                f"{TF_CONFIG} cluster[{job!r}] must be a non-empty list of 'host:port' "
                f"strings, got {addresses!r}"
            )
    if not ({"chief", "worker"} & spec.keys()):
        raise ConfigError(f"{TF_CONFIG} cluster names no 'worker' (or 'chief') tasks; {_EXAMPLE}")
    if task_type is None:
        raise ConfigError(f"{TF_CONFIG} has no 'task' with a 'type' and an 'index'; {_EXAMPLE}")
    if task_type not in spec:
        raise ConfigError(
            f"{TF_CONFIG} task type {task_type!r} is not in the cluster ({sorted(spec)})"
        )
    num_tasks = len(spec[task_type])
    if not 0 <= (task_id or 0) < num_tasks:
        raise ConfigError(
            f"{TF_CONFIG} task index {task_id!r} is out of range for the "
            f"{num_tasks} {task_type!r} address(es)"
        )
    return resolver


def num_workers(resolver: tf.distribute.cluster_resolver.ClusterResolver | None) -> int:
    """How many training workers (``chief`` + ``worker`` tasks) a resolver names (1 if None)."""
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return len(spec.get("chief", [])) + len(spec.get("worker", []))


def make_strategy(name: str) -> tf.distribute.Strategy:
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
    global _MULTI_WORKER
    if name == "auto":
        if num_workers(read_tf_config()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "multi_worker":
        resolver = read_tf_config()
        if resolver is None:
            raise ConfigError(
                f"train.strategy=multi_worker needs the {TF_CONFIG} environment variable: the "
                "cluster's worker addresses and this process's task, e.g. "
                '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                '"task": {"type": "worker", "index": 0}} (see README, "Training on a cluster")'
            )
        if _MULTI_WORKER is None:
            _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
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


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` spans more than one worker process (its cluster names several)."""
    return num_workers(strategy.cluster_resolver) > 1


def is_replicated(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` is a real one rather than TensorFlow's default (no-op) strategy.

    Call it outside ``strategy.scope()``: inside, the default strategy is ``strategy`` itself.
    """
    return strategy is not tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory: always, except non-chief workers.

    The chief is the ``chief`` task when the cluster has one, else ``worker`` 0.
    """
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type = resolver.task_type
    if task_type is None or task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and (resolver.task_id or 0) == 0 and not has_chief


def worker_dir(path: str | Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes what belongs at ``path``.

    The chief writes to ``path`` itself; any other worker writes to a per-task temporary
    directory (``<tmp>/tfrs_movies-<type><id>-<pid>/<name>``), which the caller removes with
    :func:`remove_worker_dir` when done.
    """
    path = Path(path)
    if is_chief(strategy):
        return path
    resolver = strategy.cluster_resolver
    task = f"{resolver.task_type}{resolver.task_id or 0}"
    root = Path(tempfile.gettempdir()) / f"tfrs_movies-{task}-{os.getpid()}"
    if root not in _REGISTERED:  # removed at exit too, should the worker fail before cleanup
        _REGISTERED.add(root)
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root / path.name


def remove_worker_dir(path: str | Path, strategy: tf.distribute.Strategy) -> None:
    """Deletes a non-chief worker's temporary directory for ``path`` (no-op on the chief)."""
    if not is_chief(strategy):
        shutil.rmtree(worker_dir(path, strategy).parent, ignore_errors=True)


def all_workers_ok(strategy: tf.distribute.Strategy, ok: bool = True) -> bool:
    """A barrier: blocks until every worker calls it; True if every worker passed ``ok``.

    Collective: under a multi-worker strategy every worker must call it the same number of
    times. Without one it returns ``ok``.
    """
    if not is_multi_worker(strategy):
        return ok
    failures = 0.0 if ok else 1.0
    per_replica = strategy.run(lambda: tf.constant(failures))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return float(total.numpy()) == 0.0
