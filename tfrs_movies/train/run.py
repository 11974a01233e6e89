"""One training run, from a config to a complete run directory.

``train_and_evaluate`` is a straight pipeline: check the run directory, prepare the data, fit,
evaluate on the test split, export, finalize. Everything is written into ``<run>.partial`` and
renamed into place only when complete (see :mod:`tfrs_movies.rundir`). The exported pipeline
(the Recommender over the saved artifacts) is scored afterwards by
:func:`tfrs_movies.evaluation.pipeline.evaluate_pipeline`; training never imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfrs_movies import export
from tfrs_movies.config import Config, config_differences, save_config
from tfrs_movies.data.prepare import PreparedData, prepare_data, refit_data
from tfrs_movies.data.schema import Ratings
from tfrs_movies.errors import ArtifactError, ConfigError, TfrsMoviesError
from tfrs_movies.evaluation.model import evaluate_model, format_metrics
from tfrs_movies.evaluation.run_baselines import (
    BaselineProcess,
    baseline_arguments,
    evaluate_run_baselines,
)
from tfrs_movies.log import Log, print_line
from tfrs_movies.model.multitask import MovieLensModel
from tfrs_movies.rundir import RunPaths, check_workdir, finalize_run, is_run
from tfrs_movies.train import distributed
from tfrs_movies.train.fit import (
    FitResult,
    build_model,
    fit_model,
    make_optimizer,
    seed_everything,
)
from tfrs_movies.train.hparams import hparams_metrics, write_hparams
from tfrs_movies.train.threads import configure_threads

# train.refit = "auto" refits when the validation carve holds at least this share of the
# training ratings: a smaller carve adds too little data to pay for a second training.
REFIT_MIN_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a training run produced.

    Attributes:
        run_dir: the complete run directory.
        metrics: the contents of ``metrics.json``.
        config: the resolved config.
        prepared: the data the run was trained and evaluated on (None when ``resume`` found
            the run already complete), to pass on to the pipeline evaluation.
    """

    run_dir: Path
    metrics: dict[str, Any]
    config: Config
    prepared: PreparedData | None = None


MAX_LISTED_DIFFERENCES = 5
"""Config keys spelled out when a resume is refused; the rest are counted."""


def _check_resumable(partial: Path, workdir: Path, config: Config) -> None:
    """Raises unless ``partial`` is an interrupted run of this very config."""
    if not partial.exists():
        raise ArtifactError(
            f"nothing to resume: neither {workdir} nor {partial} exists; run without --resume "
            "to start a new run"
        )
    saved = json.loads(RunPaths(partial).config.read_text())
    if not isinstance(saved, dict):
        saved = {}  # not a config at all: every key differs
    differences = config_differences(saved, json.loads(json.dumps(config.to_dict())))
    if differences:
        shown = "; ".join(differences[:MAX_LISTED_DIFFERENCES])
        more = len(differences) - MAX_LISTED_DIFFERENCES
        if more > 0:
            shown += f"; and {more} more"
        newer = ""
        if any("absent in the run" in line for line in differences):
            newer = (
                " (a key absent from the run was added by a newer tfrs_movies: finish the run "
                "with the version that started it)"
            )
        raise ConfigError(
            f"{partial} was started with a different config ({shown}); resume with the same "
            f"config and overrides{newer}, or pass --overwrite to start over"
        )


def _fit_in(
    work: Path,
    created: bool,
    strategy: tf.distribute.Strategy,
    prepared: PreparedData,
    config: Config,
    resume_from: Path,
    log: Log,
    phase: str = "",
) -> tuple[MovieLensModel, FitResult]:
    """Builds, compiles and fits the model in the work directory ``work``.

    If this fails before any epoch was checkpointed, a ``work`` directory this call created is
    removed: it holds nothing to resume and would only block the next start (issue 16).

    Args:
        phase: "" for the run's first fit, or a sub-directory name ("refit") for a later one,
            whose checkpoints and TensorBoard logs go under that name.

    Returns:
        (model, fit result).
    """
    chief = distributed.is_chief(strategy)
    replicated = distributed.is_replicated(strategy)  # outside the scope (see is_replicated)
    paths = RunPaths(work)
    try:
        seed_everything(config.train.seed)
        with strategy.scope():  # tf.distribute (issue 8): model, optimizer, metrics replicated
            model = build_model(prepared, config)
            model.compile(optimizer=make_optimizer(config))
            if replicated:
                # Metric results are already aggregated across replicas: take one, do not sum.
                model.distribute_reduction_method = "first"
        fit = fit_model(
            model,
            prepared,
            config,
            checkpoint_dir=paths.checkpoints / phase,
            tensorboard_dir=paths.tensorboard / phase
            if config.train.tensorboard and chief
            else None,
            log=log,
            resume_from=resume_from / phase,
        )
    except BaseException:
        if created and tf.train.latest_checkpoint(str(paths.checkpoints / "last")) is None:
            shutil.rmtree(work, ignore_errors=True)
        raise
    return model, fit


def refits(prepared: PreparedData, config: Config) -> bool:
    """Whether the run refits on the whole training split after early stopping.

    ``train.refit``: "always" / "never"; "auto" when the validation carve holds at least
    :data:`REFIT_MIN_SHARE` of the training ratings. Never without a validation carve.
    """
    carve = prepared.validation.num_ratings
    if carve == 0 or config.train.refit == "never":
        return False
    return config.train.refit == "always" or carve >= REFIT_MIN_SHARE * prepared.train.num_ratings


def _fit_and_refit(
    work: Path,
    created: bool,
    strategy: tf.distribute.Strategy,
    prepared: PreparedData,
    config: Config,
    checkpoints: Path,
    log: Log,
) -> tuple[MovieLensModel, FitResult, FitResult | None, PreparedData, str]:
    """Fits on the validation carve's remainder, then refits on the whole training split.

    The refit (when :func:`refits`) trains a fresh model, same seed, for the best validation
    epoch count.

    Returns:
        (final model, first fit, refit or None, the data the final model was fitted on,
        its checkpoint phase: "refit" or "").
    """
    model, fit = _fit_in(work, created, strategy, prepared, config, checkpoints, log)
    if not refits(prepared, config):
        return model, fit, None, prepared, ""
    # The epoch count was chosen on the validation carve; the final model trains on all of
    # the training split for that many epochs, from scratch (same seed).
    prepared, phase = refit_data(prepared), "refit"
    log(
        f"refit: a new model on all {prepared.fit.num_ratings:,} training ratings for "
        f"{fit.best_epoch} epochs (the best validation epoch)"
    )
    refit_config = config.replace(train=dataclasses.replace(config.train, epochs=fit.best_epoch))
    model, refit = _fit_in(
        work,
        False,
        strategy,
        prepared,
        refit_config,
        checkpoints,
        lambda message: log(f"refit {message}"),
        phase=phase,
    )
    return model, fit, refit, prepared, phase


def _background_baselines(
    selection: PreparedData, config: Config, chief: bool, log: Log
) -> contextlib.AbstractContextManager[BaselineProcess | None]:
    """The baselines, started in a background process when the run fits them there.

    Started before the first epoch: the child runs on what training leaves idle (a core while
    TensorFlow traces, evaluates and exports; a tenth of both during the steps), and is done
    before the export on ml-100k (README, "Performance"). Only the chief evaluates.

    Args:
        selection: the data the epoch count is chosen on (see
            :func:`~tfrs_movies.evaluation.run_baselines.baseline_arguments`).
    """
    if not (chief and config.eval.baselines and config.eval.baselines_in_background):
        return contextlib.nullcontext()
    log("baselines: fitting in a background process, at the lowest CPU priority")
    return BaselineProcess(**baseline_arguments(selection, config))


def _training_metrics(fit: FitResult, refit: FitResult | None) -> dict[str, Any]:
    metrics = {
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "best_validation_value": fit.best_validation_value,
        "fit_seconds": round(fit.seconds, 2),
        "examples_per_second": round(fit.examples_per_second, 1),
        "history": fit.history,
        "refit": None,
    }
    if refit is not None:
        metrics["refit"] = {
            "epochs_run": refit.epochs_run,
            "fit_seconds": round(refit.seconds, 2),
            "examples_per_second": round(refit.examples_per_second, 1),
            "history": refit.history,
        }
    return metrics


def train_and_evaluate(
    config: Config,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    ratings: Ratings | None = None,
    log: Log = print_line,
) -> RunResult:
    """Trains, evaluates and exports one run into ``workdir``.

    Work happens in ``<workdir>.partial`` (checkpoints included, so ``resume=True`` can continue
    an interrupted run); only a complete run is renamed to ``workdir``. A start that fails
    before the first epoch is checkpointed (bad data, bad config) leaves no ``.partial`` behind.

    Args:
        config: the resolved config.
        workdir: the run directory to create.
        resume: continue ``<workdir>.partial`` from its last checkpoint.
        overwrite: replace an existing ``workdir`` (or an interrupted ``.partial``).
        ratings: use this dataset instead of loading ``config.data.source``.
        log: receives one line per progress step.

    Returns:
        The run's directory, metrics, config and prepared data.

    Raises:
        ArtifactError: the run directory cannot be used (see
            :func:`tfrs_movies.rundir.check_workdir`), or ``resume`` with nothing to resume.
        ConfigError: ``resume`` with a config other than the interrupted run's.
        DataError: the data cannot be read.
    """
    # The run directory is checked first, so a bad one fails before the strategy starts (a
    # cluster's servers, GPUs); these checks run no TensorFlow op, which matters because
    # MultiWorkerMirroredStrategy must be created before any (tf.distribute, issue 8).
    run_dir = Path(workdir)
    partial = check_workdir(run_dir, resume=resume, overwrite=overwrite).partial
    if resume and is_run(run_dir):
        log(f"{run_dir} is already complete; nothing to resume")
        return RunResult(run_dir, json.loads(RunPaths(run_dir).metrics.read_text()), config)
    if resume:
        _check_resumable(partial, run_dir, config)
    # Before the strategy: the CPU pools can only be sized before TensorFlow starts.
    configure_threads(config.train.intra_op_threads)
    strategy = distributed.make_strategy(config.train.strategy)
    chief = distributed.is_chief(strategy)  # only the chief writes the run directory
    if not resume and partial.exists() and chief:  # check_workdir allowed it: overwrite
        shutil.rmtree(partial)

    started = time.perf_counter()
    # Before anything is written: data that cannot be read or split leaves no trace.
    prepared = prepare_data(config, ratings=ratings, log=log)
    # tf.distribute (issue 8): every worker checks before the chief writes; a non-chief worker
    # writes into a temporary directory instead of `partial` and resumes from the chief's.
    distributed.all_workers_ok(strategy)
    work = distributed.worker_dir(partial, strategy)
    created = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    save_config(config, RunPaths(work).config)
    selection = prepared  # the data the epoch count is chosen on
    with _background_baselines(selection, config, chief, log) as baselines:
        model, fit, refit, prepared, phase = _fit_and_refit(
            work, created, strategy, prepared, config, RunPaths(partial).checkpoints, log
        )
        # tf.distribute (issue 8): non-chief workers are done once the chief has exported; the
        # chief evaluates and exports an unreplicated copy of the best weights (no collectives).
        if not chief:
            chief_ok = distributed.all_workers_ok(strategy)
            distributed.remove_worker_dir(partial, strategy)
            if not chief_ok:
                raise TfrsMoviesError("the chief worker failed after training; see its log")
            log(f"worker done; the chief writes {run_dir}")
            return RunResult(run_dir, {}, config, prepared)
        if distributed.is_replicated(strategy):
            model = _unreplicated_best(prepared, config, RunPaths(partial).checkpoints / phase)
        metrics = evaluate_model(model, prepared, config, log=log)
        metrics["training"] = _training_metrics(fit, refit)
        # "auto" resolves by the machine's CPU: which one this run's softmax products used.
        metrics["training"]["catalogue_scores_dtype"] = model.retrieval_task.scores_dtype.name
        if config.train.tensorboard:
            write_hparams(RunPaths(partial).tensorboard, config, hparams_metrics(metrics))
        export.export_run(model, prepared, config, metrics, partial, log=log)
        if config.eval.baselines:
            metrics["baselines"] = evaluate_run_baselines(selection, config, baselines, log)
    log(format_metrics(metrics))
    metrics["training"]["total_seconds"] = round(time.perf_counter() - started, 2)
    finalize_run(partial, run_dir, metrics, overwrite=overwrite)
    distributed.all_workers_ok(strategy)  # tf.distribute (issue 8): releases the other workers
    log(f"run complete: {run_dir} ({metrics['training']['total_seconds']:.0f}s)")
    return RunResult(run_dir, metrics, config, prepared)


def _unreplicated_best(prepared: PreparedData, config: Config, checkpoints: Path) -> MovieLensModel:
    """A model outside any strategy holding the best checkpoint's weights (for export)."""
    model = build_model(prepared, config)
    restored = (
        tf.train.Checkpoint(model=model)
        .restore(tf.train.latest_checkpoint(str(checkpoints / "best")))
        .expect_partial()
    )
    sample = prepared.model_inputs(prepared.fit)
    model.task_losses({key: value[:2] for key, value in sample.items()})  # creates weights
    restored.assert_existing_objects_matched()
    return model
