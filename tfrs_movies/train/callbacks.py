"""The Keras callbacks of a training run: the weights averaged over epochs, validation
metrics, best epoch and early stopping, the resumable run state, and the progress line.

Keras calls them in list order at the end of every epoch, after its own validation pass, so
each one sees what the ones before it added to ``logs``. :class:`EpochAverage` puts the
averaged weights into the model before that validation pass and :class:`TrainingWeightsBack`
takes them out again, so the callbacks between them see the average.
:class:`ValidationMetrics` adds the weighted validation loss and Recall@10, :class:`BestEpoch`
decides whether the epoch is the best so far (and stops training after ``patience`` epochs
without one), :class:`RunState` records the epoch and checkpoints everything needed to resume
exactly, and :class:`ProgressLine` prints one line, last, so that an interrupted run has
always saved the epoch it reported. What a fit shows within its epochs, and its TensorBoard
logs, are :mod:`tfrs_movies.train.reporting`'s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_movies.config import Config
from tfrs_movies.data.prepare import PreparedData
from tfrs_movies.evaluation import model_scores, topn_metrics
from tfrs_movies.log import Log


def validation_users(prepared: PreparedData, config: Config) -> np.ndarray:
    """The validation users whose Recall@10 is tracked: all, or a seeded sample of at most
    ``train.validation_max_users`` (the per-user metric scores every movie for every user)."""
    users = np.unique(prepared.validation.user_index)
    if len(users) > config.train.validation_max_users:
        users = np.random.default_rng(config.data.split_seed).choice(
            users, config.train.validation_max_users, replace=False
        )
    return users


def validation_recall(model, prepared: PreparedData, user_rows: np.ndarray) -> float:
    """Recall@10 on the validation split for ``user_rows``, excluding their ``fit`` movies."""
    validation = prepared.validation.subset(np.isin(prepared.validation.user_index, user_rows))
    metrics = topn_metrics(
        model_scores(model, prepared), prepared.fit, validation, ks=(10,), ndcg_k=10
    )
    return float(metrics["recall@10"])


class ValidationMetrics(tf.keras.callbacks.Callback):
    """Adds ``val_loss`` (the loss weights applied to the validation task losses; Keras' own is
    the last batch's) and ``val_recall@10`` to the logs of epochs that had a validation pass.

    Args:
        prepared: the data; its validation split is ranked against all movies.
        config: the loss weights and the validation user cap.
    """

    def __init__(self, prepared: PreparedData, config: Config):
        super().__init__()
        self.prepared = prepared
        self.retrieval_weight = config.train.retrieval_weight
        self.rating_weight = config.train.rating_weight
        self.user_rows = validation_users(prepared, config)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or "val_rmse" not in logs:
            return
        logs["val_loss"] = self.retrieval_weight * float(
            logs["val_retrieval_loss"]
        ) + self.rating_weight * float(logs["val_rating_loss"])
        logs["val_recall@10"] = validation_recall(self.model, self.prepared, self.user_rows)


class BestEpoch(tf.keras.callbacks.Callback):
    """Early stopping with the best weights restored at the end.

    Tracks ``monitor`` (``recall``: validation Recall@10, ``rmse`` or ``loss``), stores the best
    epoch's weights (in ``best_checkpoints`` when given, else in memory), stops training once
    ``patience`` epochs passed without improving (0: never), and puts the best weights back when
    training ends. Without a validation split every epoch counts as the best, so the model ends
    with its last weights.

    Args:
        monitor: ``recall``, ``rmse`` or ``loss``.
        patience: epochs without improvement before stopping; 0 disables early stopping.
        best_checkpoints: where the best epoch's weights are saved, or None.
        fallback_dir: another ``best`` checkpoint directory to restore from when
            ``best_checkpoints`` holds none (a resumed non-chief worker: the chief's).
    """

    def __init__(
        self,
        monitor: str,
        patience: int,
        best_checkpoints: tf.train.CheckpointManager | None = None,
        fallback_dir: Path | None = None,
    ):
        super().__init__()
        self.monitor, self.patience = monitor, patience
        self.best_checkpoints, self.fallback_dir = best_checkpoints, fallback_dir
        # Checkpointed with the run state: lower is better (recall is negated).
        self.best_value = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_loss")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.improved = False
        self._best_weights: list[np.ndarray] | None = None

    def should_stop(self, epochs_done: int, has_validation: bool) -> bool:
        """Whether training stops before the epoch after ``epochs_done`` (for a resumed run)."""
        return bool(
            self.patience
            and has_validation
            and epochs_done - int(self.best_epoch.numpy()) >= self.patience
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        has_validation = "val_rmse" in logs
        if has_validation:
            tracked = {
                "recall": -logs["val_recall@10"],
                "rmse": float(logs["val_rmse"]),
                "loss": logs["val_loss"],
            }[self.monitor]
            self.improved = tracked < float(self.best_value.numpy())
        else:
            tracked, self.improved = 0.0, True
        if self.improved:
            self.best_value.assign(tracked)
            self.best_epoch.assign(epoch + 1)
            if self.best_checkpoints is not None:
                self.best_checkpoints.save(checkpoint_number=epoch + 1)
            else:
                self._best_weights = [w.numpy() for w in self.model.weights]
        if self.should_stop(epoch + 1, has_validation):
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self.restore_best()

    def restore_best(self) -> None:
        """Puts the best epoch's weights into the model (no-op before any epoch)."""
        best = self.best_checkpoints is not None and (
            self.best_checkpoints.latest_checkpoint
            or (self.fallback_dir and tf.train.latest_checkpoint(str(self.fallback_dir)))
        )
        if best:
            tf.train.Checkpoint(model=self.model).restore(best).expect_partial()
        elif self._best_weights is not None:
            for weight, value in zip(self.model.weights, self._best_weights, strict=True):
                weight.assign(value)


class EpochAverage(tf.keras.callbacks.Callback):
    """Puts an average over epochs of the end-of-epoch weights into the model for validation,
    early stopping and the end of training.

    After each epoch, ``average = decay * average + (1 - decay) * weights`` for every trainable
    weight (the first epoch's average is its weights). The average goes into the model before
    Keras' validation pass (or at the epoch's end when there is none), so every callback up to
    :class:`TrainingWeightsBack` sees, validates and saves it; that callback puts the training
    weights back, and training continues from them. The averages are checkpointed with the run
    state (:attr:`state`), so a resumed run continues the same average.

    Args:
        decay: the weight of the previous average, in (0, 1).
    """

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay
        # Holds the average variables once the model's weights exist (Keras builds them in the
        # first step); a resumed run's values are restored into them as they are created.
        self.state = tf.Module(name="epoch_average")
        self._training_weights: list[np.ndarray] | None = None
        self._training = False
        self._epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self._training = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._training:
            self._average_in()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._training_weights is None:  # no validation pass this epoch
            self._average_in()

    def _average_in(self) -> None:
        weights = self.model.trainable_weights
        values = [weight.numpy() for weight in weights]
        if not hasattr(self.state, "average"):
            # On resume, the tracked variables are restored from the checkpoint as they are
            # assigned here (a resumed run's first epoch is not epoch 0).
            self.state.average = [
                tf.Variable(value, trainable=False, name=f"average_{i}")
                for i, value in enumerate(values)
            ]
        first = self._epoch == 0  # the average starts from the first epoch's weights
        for average, value in zip(self.state.average, values, strict=True):
            average.assign(value if first else self.decay * average + (1 - self.decay) * value)
        for weight, average in zip(weights, self.state.average, strict=True):
            weight.assign(average)
        self._training_weights = values

    def put_training_weights_back(self) -> None:
        """Puts the weights training continues from back into the model (no-op if not out)."""
        if self._training_weights is not None:
            for weight, value in zip(
                self.model.trainable_weights, self._training_weights, strict=True
            ):
                weight.assign(value)
            self._training_weights = None


class TrainingWeightsBack(tf.keras.callbacks.Callback):
    """Ends the stretch of callbacks that see :class:`EpochAverage`'s average (see there)."""

    def __init__(self, average: EpochAverage):
        super().__init__()
        self.average = average

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.average.put_training_weights_back()


class RunState(tf.keras.callbacks.Callback):
    """The per-epoch history and everything needed to resume: checkpointed after each epoch.

    The checkpoint holds the model, the optimizer (its step drives the dropout masks), the
    number of epochs done, the early-stopping state and the history, so a resumed run continues
    with the next epoch's shuffle and ends exactly where an uninterrupted run ends.

    Args:
        model: the compiled model (tracked by the checkpoint before ``fit`` sets ``self.model``).
        best: the early-stopping callback whose state is checkpointed too.
        checkpoint_dir: where ``last/`` checkpoints go, or None to keep nothing on disk.
        resume_dir: the ``last/`` directory to resume from (default: ``checkpoint_dir``'s).
        log: receives the "resumed from" line.
        average: the weight averaging whose state is checkpointed too, or None.
    """

    def __init__(
        self,
        model: tf.keras.Model,
        best: BestEpoch,
        checkpoint_dir: Path | None,
        resume_dir: Path | None,
        log: Log,
        average: EpochAverage | None = None,
    ):
        super().__init__()
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        self._history_json = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
        self.history: list[dict[str, float]] = []
        self.fit_seconds = 0.0
        self.epochs_timed = 0
        self._manager = None
        if checkpoint_dir is not None:
            state = tf.train.Checkpoint(
                model=model,
                optimizer=model.optimizer,
                epoch=self.epochs_done,
                best_loss=best.best_value,
                best_epoch=best.best_epoch,
                history=self._history_json,
                **({"epoch_average": average.state} if average is not None else {}),
            )
            self._manager = tf.train.CheckpointManager(state, str(checkpoint_dir), max_to_keep=1)
            latest = tf.train.latest_checkpoint(str(resume_dir or checkpoint_dir))
            if latest:
                state.restore(latest).expect_partial()
                log(f"resumed from {latest} after epoch {int(self.epochs_done.numpy())}")
        self.history = json.loads(self._history_json.numpy().decode())

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()
        self._seconds: float | None = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        # Keras validates inside the epoch: the epoch's time is the training part only.
        self._seconds = time.perf_counter() - self._started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        seconds = (
            self._seconds if self._seconds is not None else time.perf_counter() - self._started
        )
        self.fit_seconds += seconds
        self.epochs_timed += 1
        record = {
            "epoch": epoch + 1,
            "seconds": round(seconds, 3),
            "retrieval_loss": float(logs["retrieval_loss"]),
            "rating_loss": float(logs["rating_loss"]),
        }
        if "val_rmse" in logs:
            record["val_retrieval_loss"] = float(logs["val_retrieval_loss"])
            record["val_rmse"] = float(logs["val_rmse"])
            record["val_loss"] = float(logs["val_loss"])
            record["val_recall@10"] = float(logs["val_recall@10"])
        logs["seconds"] = record["seconds"]  # TensorBoard shows it beside the losses
        self.history.append(record)
        self._history_json.assign(json.dumps(self.history))
        self.epochs_done.assign(epoch + 1)
        if self._manager is not None:
            self._manager.save(checkpoint_number=epoch + 1)


class ProgressLine(tf.keras.callbacks.Callback):
    """Logs one line per epoch: time, training losses, validation metrics, ``*best``.

    Args:
        state: the run state holding the epoch's record.
        best: the early-stopping callback (whether the epoch was the best).
        epochs: the configured number of epochs.
        log: receives the line.
    """

    def __init__(self, state: RunState, best: BestEpoch, epochs: int, log: Log):
        super().__init__()
        self.state, self.best, self.epochs, self.log = state, best, epochs, log

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = self.state.history[-1]
        line = (
            f"epoch {record['epoch']}/{self.epochs} {record['seconds']:5.1f}s"
            f"  retrieval {record['retrieval_loss']:.4f}  rating {record['rating_loss']:.4f}"
        )
        if "val_rmse" in record:
            line += (
                f"  | val recall@10 {record['val_recall@10']:.4f}"
                f"  val rmse {record['val_rmse']:.4f}{'  *best' if self.best.improved else ''}"
            )
        self.log(line)
