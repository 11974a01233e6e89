"""Fitting: the model, its optimizer, its input pipeline, and one Keras ``fit`` call.

``fit_model`` runs a single ``model.fit`` over a stream of epochs whose shuffles are a function
of (seed, epoch) only (:func:`epoch_order`), with Keras' own validation pass and the callbacks
of :mod:`tfrs_movies.train.callbacks` (validation Recall@10, early stopping with the best
weights restored, a checkpoint of the whole run state after every epoch, a progress line) and
:mod:`tfrs_movies.train.reporting` (progress within long epochs, TensorBoard). Together with
the rating head's stateless dropout (a function of seed and step), this makes a run resumed
from any epoch's checkpoint end exactly where an uninterrupted run ends, and two runs with the
same seed identical.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_movies.config import Config
from tfrs_movies.data.prepare import PreparedData
from tfrs_movies.log import Log, print_line
from tfrs_movies.model.multitask import MovieLensModel
from tfrs_movies.train.callbacks import (
    BestEpoch,
    EpochAverage,
    ProgressLine,
    RunState,
    TrainingWeightsBack,
    ValidationMetrics,
)
from tfrs_movies.train.optimizers import LazyAdam
from tfrs_movies.train.reporting import EpochTensorBoard, StepProgress

VALIDATION_BATCH_SIZE = 8192  # validation has no gradients: large batches, few steps


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow, and asks TensorFlow for deterministic kernels."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(prepared: PreparedData, config: Config) -> MovieLensModel:
    """Builds (but does not compile) the multitask model for the prepared data."""
    return MovieLensModel(
        num_users=prepared.num_users,
        num_movies=prepared.num_movies,
        tables=prepared.tables,
        global_mean=prepared.global_mean,
        movie_frequencies=prepared.movie_frequencies,
        config=config.model,
        retrieval_weight=config.train.retrieval_weight,
        rating_weight=config.train.rating_weight,
        seed=config.train.seed,
        user_frequencies=np.bincount(
            prepared.user_vocab_of_row[prepared.fit.user_index], minlength=prepared.num_users + 1
        ),
        batch_size=config.train.batch_size,
    )


def make_optimizer(config: Config) -> tf.keras.optimizers.Optimizer:
    """The optimizer ``train.optimizer`` names, at ``train.learning_rate``.

    Both update only the embedding rows in the batch: ``adam`` is :class:`LazyAdam`, and
    Adagrad's sparse step is row-wise already.
    """
    t = config.train
    if t.optimizer == "adagrad":
        return tf.keras.optimizers.Adagrad(t.learning_rate)
    return LazyAdam(t.learning_rate)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of one epoch: a function of (seed, epoch) only, so resuming reproduces it."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def _kept_examples(num_examples: int, batch_size: int, num_replicas: int) -> int:
    # tf.distribute (issue 8): a last partial batch smaller than the replica count would leave a
    # replica with an empty batch; it is dropped (at most num_replicas - 1 examples per epoch).
    remainder = num_examples % batch_size
    if num_replicas > 1 and 0 < remainder < num_replicas:
        return num_examples - remainder
    return num_examples


def _distribute_by_data(dataset: tf.data.Dataset, num_replicas: int) -> tf.data.Dataset:
    options = tf.data.Options()
    # Keras drops a fit's iterator when the fit ends; with autotuning on, its destructor waited
    # on one of tf.data's background threads and the end of a fit stalled 0.1-6 s (ml-100k,
    # measured; py-spy: RootDataset::Iterator::~Iterator). The pipeline, a gather of in-memory
    # arrays per batch, keeps ahead of the training step with a prefetch buffer alone.
    options.autotune.enabled = False
    # tf.distribute (issue 8): every worker reads the same ordered data and keeps its
    # replicas' share of each global batch (DATA sharding; there are no files to shard).
    if num_replicas > 1:
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def make_dataset(
    inputs: dict[str, np.ndarray],
    batch_size: int,
    order: np.ndarray | None = None,
    num_replicas: int = 1,
) -> tf.data.Dataset:
    """A batched tf.data pipeline over in-memory inputs (one pass), in ``order`` when given.

    Args:
        inputs: equal-length (num_examples,) arrays by feature name.
        batch_size: the global batch size; with ``num_replicas`` > 1 (a tf.distribute
            strategy) each global batch is split across the replicas of all workers.
        order: (num_examples,) permutation to read the examples in, or None.
        num_replicas: replicas in sync.

    Returns:
        Dicts of (batch,) tensors.
    """
    if order is not None:
        inputs = {key: value[order] for key, value in inputs.items()}
    num_examples = len(next(iter(inputs.values())))
    keep = _kept_examples(num_examples, batch_size, num_replicas)
    inputs = {key: value[:keep] for key, value in inputs.items()}
    dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(batch_size)
    return _distribute_by_data(dataset, num_replicas)


def epochs_dataset(
    inputs: dict[str, np.ndarray],
    batch_size: int,
    seed: int,
    epochs: range,
    num_replicas: int = 1,
) -> tuple[tf.data.Dataset, int]:
    """The batches of several epochs in one stream, each epoch shuffled by :func:`epoch_order`.

    Batch for batch the same as :func:`make_dataset` with ``order=epoch_order(...)`` once per
    epoch. Each epoch's indices are padded with -1 to a whole number of batches and read a whole
    batch at a time (a pipeline element per example cost a tenth of the training step's CPU);
    the padding is dropped before the gather, leaving each epoch's last batch partial as in a
    single pass. Under tf.distribute the indices are batched again by a ``batch`` op, the one
    kind of batching it can split across replicas.

    Args:
        inputs: equal-length (num_examples,) arrays by feature name.
        batch_size: the global batch size.
        seed: the shuffle seed.
        epochs: the (0-based) epochs to produce, e.g. ``range(resumed_epochs, total_epochs)``.
        num_replicas: replicas in sync (see :func:`make_dataset`).

    Returns:
        The dataset (dicts of (batch,) tensors) and the number of batches per epoch, to give
        ``Model.fit`` as ``steps_per_epoch``.
    """
    num_examples = len(next(iter(inputs.values())))
    keep = _kept_examples(num_examples, batch_size, num_replicas)
    steps_per_epoch = -(-keep // batch_size)
    padded = steps_per_epoch * batch_size

    def padded_order(epoch: np.int64) -> np.ndarray:
        rows = np.full(padded, -1, np.int64)
        rows[:keep] = epoch_order(num_examples, seed, int(epoch))[:keep]
        return rows.reshape(steps_per_epoch, batch_size)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        # numpy, not TensorFlow, draws the permutation, so it matches epoch_order exactly and
        # only one epoch's order is in memory at a time.
        rows = tf.numpy_function(padded_order, [epoch], tf.int64, stateful=False)
        rows.set_shape([steps_per_epoch, batch_size])
        return tf.data.Dataset.from_tensor_slices(rows)

    tensors = {key: tf.constant(value) for key, value in inputs.items()}

    def gather(rows: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = tf.boolean_mask(rows, rows >= 0)
        return {key: tf.gather(value, rows) for key, value in tensors.items()}

    dataset = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(epoch_batches)
    if num_replicas > 1:
        dataset = dataset.unbatch().batch(batch_size)
    dataset = dataset.map(gather)
    return _distribute_by_data(dataset, num_replicas), steps_per_epoch


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What fitting produced.

    Attributes:
        epochs_run: epochs trained in total (a resumed run's earlier epochs included).
        best_epoch: the (1-based) epoch whose weights the model ends with.
        best_validation_value: the early-stopping metric at ``best_epoch`` (lower is better:
            recall is negated; 0.0 without a validation split).
        history: one record per epoch: ``epoch``, ``seconds``, ``retrieval_loss``,
            ``rating_loss`` and, with a validation split, ``val_retrieval_loss``, ``val_rmse``,
            ``val_loss``, ``val_recall@10``.
        seconds: training seconds of the epochs run by this call (validation excluded).
        examples_per_second: training examples per second over those epochs.
    """

    epochs_run: int
    best_epoch: int
    best_validation_value: float
    history: list[dict[str, float]]
    seconds: float
    examples_per_second: float


def fit_model(
    model: MovieLensModel,
    prepared: PreparedData,
    config: Config,
    checkpoint_dir: Path | None = None,
    tensorboard_dir: Path | None = None,
    log: Log = print_line,
    resume_from: Path | None = None,
    callbacks: Sequence[tf.keras.callbacks.Callback] = (),
) -> FitResult:
    """Trains the compiled ``model`` with ``model.fit``; stops early on the validation split.

    The model ends with the weights of its best validation epoch (the last epoch when there is
    no validation split). With ``checkpoint_dir`` (or ``resume_from``, when given: a non-chief
    worker resumes from the chief's checkpoints) holding a checkpoint of an interrupted run,
    training continues from it and ends where an uninterrupted run would have. Under a
    tf.distribute strategy (the model's), every worker must call this with the same data.

    Args:
        model: compiled (see :func:`build_model`, :func:`make_optimizer`).
        prepared: the data; the model is fitted on ``prepared.fit``.
        config: ``train.*`` says epochs, batch size, seed, early stopping.
        checkpoint_dir: where ``last/`` (run state) and ``best/`` (weights) checkpoints go;
            None keeps the best weights in memory and cannot resume.
        tensorboard_dir: where TensorBoard logs go, or None for none.
        log: receives one line per epoch (and a "resumed from" line) and, during epochs
            longer than 30 s, a progress line every 30 s (a progress bar instead when ``log``
            is :func:`print_line` and stdout is a terminal).
        resume_from: the checkpoint directory to resume from (default ``checkpoint_dir``).
        callbacks: further Keras callbacks, called after the validation metrics are in the
            epoch's logs (a tuning trial reports ``val_recall@10`` to its pruner this way).

    Returns:
        The epochs run, the best epoch and the per-epoch history.
    """
    t = config.train
    # tf.distribute (issue 8): the global batch is split across the model's strategy's replicas.
    num_replicas = model.distribute_strategy.num_replicas_in_sync
    resume_from = checkpoint_dir if resume_from is None else resume_from
    has_validation = prepared.validation.num_ratings > 0
    monitor = t.early_stopping_metric
    if monitor == "auto":
        monitor = "recall" if t.retrieval_weight > 0 else "rmse"
    best_checkpoints = None
    if checkpoint_dir is not None:
        best_checkpoints = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model), str(checkpoint_dir / "best"), max_to_keep=1
        )
    best = BestEpoch(
        monitor,
        t.early_stopping_patience,
        best_checkpoints=best_checkpoints,
        fallback_dir=resume_from / "best" if resume_from is not None else None,
    )
    average = EpochAverage(t.epoch_average_decay) if t.epoch_average_decay > 0 else None
    state = RunState(
        model,
        best,
        checkpoint_dir / "last" if checkpoint_dir is not None else None,
        resume_from / "last" if resume_from is not None else None,
        log,
        average,
    )
    # The averaged weights are in the model from Keras' validation pass to TrainingWeightsBack:
    # validated, compared and saved as the best; the run state saves the training weights.
    callbacks = [
        *([average] if average is not None else []),
        ValidationMetrics(prepared, config),
        best,
        *([TrainingWeightsBack(average)] if average is not None else []),
        state,
        ProgressLine(state, best, t.epochs, log),
        *callbacks,
    ]
    if tensorboard_dir is not None:
        callbacks.append(EpochTensorBoard(str(tensorboard_dir)))

    start = int(state.epochs_done.numpy())
    if start < t.epochs and not best.should_stop(start, has_validation):
        dataset, steps_per_epoch = epochs_dataset(
            prepared.model_inputs(prepared.fit),
            t.batch_size,
            t.seed,
            range(start, t.epochs),
            num_replicas=num_replicas,
        )
        # In-batch negatives cost O(batch) per example: validating at the training batch size
        # keeps that pass as cheap per example as training (8192 made it 60 s at 25M ratings).
        validation_batch = t.batch_size if model.negatives == "in_batch" else VALIDATION_BATCH_SIZE
        validation_data = (
            make_dataset(
                prepared.model_inputs(prepared.validation),
                validation_batch,
                num_replicas=num_replicas,
            )
            if has_validation
            else None
        )
        # First, so that its bar is erased before the other callbacks print the epoch's line.
        callbacks.insert(
            0,
            StepProgress(
                steps_per_epoch,
                t.batch_size,
                t.epochs,
                log,
                validation_steps=-(-prepared.validation.num_ratings // validation_batch),
                validation_batch_size=validation_batch,
                bar=log is print_line and sys.stdout.isatty(),
            ),
        )
        model.fit(
            dataset,
            epochs=t.epochs,
            initial_epoch=start,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation_data,
            callbacks=callbacks,
            verbose=0,
        )
    else:
        # A resumed run that had already finished its epochs: no fit, so no on_train_end.
        best.set_model(model)
        best.restore_best()
    examples = state.epochs_timed * prepared.fit.num_ratings
    return FitResult(
        epochs_run=len(state.history),
        best_epoch=int(best.best_epoch.numpy()),
        best_validation_value=float(best.best_value.numpy()),
        history=state.history,
        seconds=state.fit_seconds,
        examples_per_second=examples / state.fit_seconds if state.fit_seconds else 0.0,
    )
