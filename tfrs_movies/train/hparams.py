"""TensorBoard HParams: every run, sweep run and tuning trial logs its settings and results.

``tensorboard --logdir DIR`` on a run, a sweep or a study then shows the HParams dashboard's
table and parallel-coordinates views, one row per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from tfrs_movies.config import Config
from tfrs_movies.evaluation.model import HEADLINE_METRICS

# Settings that identify an experiment but are not hyperparameters (paths, device strategy).
_NOT_HPARAMS = {"data.source", "data.manual_dir", "data.data_dir", "train.strategy"}


def flat_hparams(config: Config) -> dict[str, bool | int | float | str]:
    """The config as ``{"section.key": value}`` with values HParams can show.

    Tuples become strings (``"128,64"``), None becomes ``"auto"``; paths are left out.
    """
    flat: dict[str, bool | int | float | str] = {}
    for section, values in config.to_dict().items():
        for key, value in values.items():
            name = f"{section}.{key}"
            if name in _NOT_HPARAMS:
                continue
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            elif value is None:
                value = "auto"
            flat[name] = value
    return flat


def hparams_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a run shows in the HParams table: the model's headline test metrics
    (``test/recall@10`` ...) and its best validation Recall@10 (``val/recall@10``)."""
    shown = {
        f"test/{name}": float(value)
        for name, value in metrics.get("model", {}).items()
        if name in HEADLINE_METRICS
    }
    history = metrics.get("training", {}).get("history", [])
    recalls = [record["val_recall@10"] for record in history if "val_recall@10" in record]
    if recalls:
        shown["val/recall@10"] = max(recalls)
    return shown


def write_hparams(
    logdir: str | Path,
    config: Config,
    metrics: Mapping[str, float],
    *,
    trial_id: str | None = None,
    extra: Mapping[str, bool | int | float | str] | None = None,
) -> None:
    """Writes one HParams session (the run's settings and final metrics) into ``logdir``.

    Args:
        logdir: the run's TensorBoard folder; TensorBoard reads the run's other scalars (in
            its subfolders, e.g. Keras' ``train/`` and ``validation/``) as this session's too.
        config: the run's resolved config.
        metrics: final metric values, e.g. ``{"recall@10": 0.23, "rmse": 0.89}``; non-finite
            values are skipped.
        trial_id: the name TensorBoard shows for the session (default: the folder's name).
        extra: further hyperparameters (e.g. a tuning trial's number).
    """
    hparams: dict[str, Any] = flat_hparams(config)
    hparams.update(extra or {})
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        hp.hparams(hparams, trial_id=trial_id or Path(logdir).name)
        for name, value in metrics.items():
            value = float(value)
            if value == value and abs(value) != float("inf"):
                tf.summary.scalar(name, value, step=0)
    writer.flush()
    writer.close()
