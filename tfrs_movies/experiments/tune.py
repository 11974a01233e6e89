"""A resumable Optuna study of the model's settings, chosen on the validation split.

``run_study(config, workdir, trials=N)`` keeps an Optuna study in ``workdir/study.db``
(SQLite): a TPE sampler proposes settings from the search space
(:mod:`tfrs_movies.experiments.space`); each trial trains on the ``fit`` part of the training
split and reports its validation metric after every epoch to a median pruner, which stops
trials that trail the earlier ones at the same epoch. A study stopped in any way (even
``kill -9``) and started again continues: a trial that was running is marked failed and run
again with the same settings, so none is lost or counted twice. Once ``N`` trials have finished,
the best trial's settings are written to ``workdir/best_config.toml`` (``tfrs-movies train
--config`` takes it as is) and trained once more as a complete run in ``workdir/best_run``:
the only time the study touches the test split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna

from tfrs_movies.atomic import write_atomic
from tfrs_movies.config import Config, config_to_toml
from tfrs_movies.data.prepare import PreparedData, prepare_data
from tfrs_movies.errors import ConfigError, TfrsMoviesError, one_line
from tfrs_movies.evaluation.pipeline import evaluate_pipeline
from tfrs_movies.experiments.compare import BEST_RUN_DIR, STUDY_SUMMARY
from tfrs_movies.experiments.space import Dimension, apply_params
from tfrs_movies.experiments.trials import (
    FINISHED,
    OBJECTIVE,
    TrialObjective,
    base_params,
    progress_line,
)
from tfrs_movies.log import Log, print_line
from tfrs_movies.rundir import RunPaths, is_run
from tfrs_movies.train import train_and_evaluate

STUDY_NAME = "tfrs_movies"
STUDY_FILE = "study.db"
BEST_CONFIG_FILE = "best_config.toml"
TRIALS_LOGDIR = "tensorboard"
# Pruning: the first trials always run to the end (they set the median); no trial is judged
# before its third epoch, when the learning-rate and batch-size effects have shown.
PRUNER_STARTUP_TRIALS = 4
# TPE draws the first trials at random, then models the good and bad ones: 4 random trials leave
# 8 guided ones in the 12-trial study the README reports.
SAMPLER_STARTUP_TRIALS = 4
PRUNER_WARMUP_EPOCHS = 2
_OPTUNA_TABLES = {"studies", "trials", "version_info"}


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What a study produced.

    Attributes:
        workdir: the study directory.
        best_params: the best trial's searched settings (``section.key`` -> value).
        best_value: its validation Recall@10.
        best_trial: its number.
        finished_trials: trials finished in the study (complete or pruned), all sessions.
        best_config: the full config of the best trial.
        test_metrics: the best run's ``metrics.json`` (test split; baselines included).
    """

    workdir: Path
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    finished_trials: int
    best_config: Config
    test_metrics: dict[str, Any]


def study_identity(config: Config, prepared: PreparedData, space: Sequence[Dimension]) -> dict:
    """What a study's trials must share to be comparable: data, split, objective and space.

    The base config (every key not searched) is part of it, so that a study resumed with other
    overrides is refused instead of mixing two experiments.
    """
    searched = {d.name for d in space}
    base = {
        f"{section}.{key}": value
        for section, values in config.to_dict().items()
        for key, value in values.items()
        if f"{section}.{key}" not in searched and section != "index"
    }
    for name in ("train.strategy", "train.tensorboard", "data.data_dir", "data.manual_dir"):
        base.pop(name, None)
    return {
        "dataset": prepared.ratings.name,
        "num_ratings": prepared.ratings.num_ratings,
        "objective": OBJECTIVE,
        "space": sorted(d.describe() for d in space),
        "base_config": json.loads(json.dumps(base, sort_keys=True)),
    }


def check_study_file(path: Path) -> None:
    """Refuses a ``study.db`` that is not an Optuna SQLite database, before Optuna opens it
    (Optuna would add its tables to any SQLite file).

    Raises:
        TfrsMoviesError: naming the file and what to do.
    """
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as error:
        raise TfrsMoviesError(
            f"{path} is not an Optuna study database ({one_line(error)}); choose another "
            "--workdir or move the file away"
        ) from None
    if not _OPTUNA_TABLES <= tables:
        raise TfrsMoviesError(
            f"{path} is an SQLite database but not an Optuna study (no tables "
            f"{', '.join(sorted(_OPTUNA_TABLES - tables))}); choose another --workdir"
        )


@contextlib.contextmanager
def _study_lock(workdir: Path) -> Iterator[None]:
    """Holds ``workdir/tune.lock`` so that one process at a time runs the study; its trials
    left RUNNING in the database are then known to be from a process that died."""
    with open(workdir / "tune.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TfrsMoviesError(
                f"another `tfrs-movies tune` is running on {workdir}; wait for it or stop it"
            ) from None
        yield


def _requeue_dead_trials(study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    """Marks trials left RUNNING by a dead process as failed and queues their settings again.

    Returns:
        How many trials were re-queued.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    dead = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in dead:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return len(dead)


def run_study(
    config: Config,
    workdir: str | Path,
    *,
    trials: int,
    space: Sequence[Dimension],
    timeout: float | None = None,
    log: Log = print_line,
) -> StudyResult:
    """Runs (or continues) the study in ``workdir`` until it has ``trials`` finished trials.

    Args:
        config: the base config; the searched keys of ``space`` are set per trial.
        workdir: the study directory (created if missing).
        trials: how many finished (complete or pruned) trials the study should have in total;
            a study that already has them only re-checks the best run.
        space: the searched dimensions (see :func:`tfrs_movies.experiments.space.build_space`).
        timeout: seconds after which no new trial is started (this session), or None.
        log: receives one line per trial and per stage.

    Returns:
        The best trial, its config and its test metrics.

    Raises:
        ConfigError: ``trials`` < 1, ``timeout`` <= 0, or a study directory made for another
            dataset, split, objective, search space or base config.
        TfrsMoviesError: ``study.db`` is not an Optuna database; another tune runs there.
        DataError: the data cannot be read.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials must be a whole number >= 1, got {trials!r}")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout must be a number of seconds > 0, got {timeout!r}")
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise TfrsMoviesError(f"--workdir {workdir} is a file; give a folder for the study")
    database = workdir / STUDY_FILE
    check_study_file(database)
    # Before anything is written: data that cannot be read leaves no study behind.
    prepared = prepare_data(config, log=log)
    identity = study_identity(config, prepared, space)
    workdir.mkdir(parents=True, exist_ok=True)
    with _study_lock(workdir):
        storage = optuna.storages.RDBStorage(f"sqlite:///{database}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            storage=storage,
            study_name=STUDY_NAME,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(
                n_startup_trials=SAMPLER_STARTUP_TRIALS, seed=config.train.seed
            ),
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
            ),
            load_if_exists=True,
        )
        saved = study.user_attrs.get("identity")
        if saved is None:
            study.set_user_attr("identity", identity)
        elif saved != identity:
            different = sorted(key for key in identity if identity[key] != saved.get(key))
            raise ConfigError(
                f"the study in {workdir} was created for another experiment (different "
                f"{', '.join(different)}); use another --workdir, or the same data, split, "
                "overrides and search space"
            )
        if not study.trials:
            # The base config is the first trial, so the study can only end at or above it on
            # validation, and the README can say whether tuning beat the defaults.
            study.enqueue_trial(base_params(config, space), user_attrs={"base_config": True})
        requeued = _requeue_dead_trials(study, storage)
        # A resumed study must not replay the first session's random draws: the sampler's seed
        # moves on with the number of trials already in the study.
        study.sampler = optuna.samplers.TPESampler(
            n_startup_trials=SAMPLER_STARTUP_TRIALS, seed=config.train.seed + len(study.trials)
        )
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        log(
            f"study {workdir}: {done} of {trials} trials finished"
            + (f"; {requeued} interrupted trial(s) queued again" if requeued else "")
            + f"; maximizing {OBJECTIVE} over {len(space)} settings"
        )
        if done < trials:
            study.optimize(
                TrialObjective(config, prepared, space, workdir / TRIALS_LOGDIR),
                n_trials=None,
                timeout=timeout,
                callbacks=[
                    progress_line(trials, time.perf_counter(), log, done),
                    optuna.study.MaxTrialsCallback(trials, states=FINISHED),
                ],
                gc_after_trial=True,
            )
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        try:
            best = study.best_trial
        except ValueError:
            raise TfrsMoviesError(
                f"no trial of the study in {workdir} completed (all pruned or failed); run "
                "more trials"
            ) from None
        best_config = apply_params(config, best.params)
        write_atomic(workdir / BEST_CONFIG_FILE, config_to_toml(best_config))
        if finished < trials:
            log(f"stopped by --timeout after {finished} of {trials} trials; run again to continue")
        test_metrics = _best_run(workdir, best_config, prepared, log)
        summary = {
            "objective": OBJECTIVE,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": best.params,
            "finished_trials": finished,
            "target_trials": trials,
            "identity": identity,
            "best_run": BEST_RUN_DIR,
        }
        write_atomic(workdir / STUDY_SUMMARY, json.dumps(summary, indent=2) + "\n")
    return StudyResult(
        workdir, best.params, best.value, best.number, finished, best_config, test_metrics
    )


def _best_run(workdir: Path, best_config: Config, prepared: PreparedData, log: Log) -> dict:
    """Trains the best config as a complete run (the study's one look at the test split).

    Returns:
        The best run's ``metrics.json``; an existing best run of the same config is reused.
    """
    paths = RunPaths(workdir / BEST_RUN_DIR)
    if is_run(paths.root):
        saved = json.loads(paths.config.read_text())
        metrics = json.loads(paths.metrics.read_text())
        if saved == json.loads(json.dumps(best_config.to_dict())) and "pipeline" in metrics:
            log(f"best run {paths.root} is up to date")
            return metrics
    log(f"training the best trial's config as a complete run in {paths.root}")
    result = train_and_evaluate(
        best_config, paths.root, overwrite=True, ratings=prepared.ratings, log=log
    )
    evaluate_pipeline(result.run_dir, prepared=result.prepared, log=log)
    return json.loads(paths.metrics.read_text())
