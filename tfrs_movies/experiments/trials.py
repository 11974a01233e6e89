"""One tuning trial: the base config with a trial's settings, trained on the ``fit`` part of the
training split, scored on the validation split, reported to the pruner after every epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import tensorflow as tf

from tfrs_movies.config import Config
from tfrs_movies.data.prepare import PreparedData
from tfrs_movies.experiments.space import Dimension, apply_params
from tfrs_movies.log import Log, silent
from tfrs_movies.train.fit import build_model, fit_model, make_optimizer, seed_everything
from tfrs_movies.train.hparams import write_hparams

# The objective: validation Recall@10 of the epoch early stopping keeps. It is the product
# metric (README protocol), and the metric early stopping already tracks each epoch, so the
# pruner compares trials on the same per-epoch curve that decides when a trial stops.
OBJECTIVE = "val_recall@10"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def base_params(config: Config, space: Sequence[Dimension]) -> dict[str, Any]:
    """The base config's value of each searched key that lies in its dimension."""
    params = {}
    for dimension in space:
        section, key = dimension.name.split(".")
        value = getattr(getattr(config, section), key)
        if dimension.contains(value):
            params[dimension.name] = value
    return params


class _PruningReport(tf.keras.callbacks.Callback):
    """Reports the validation metric after each epoch and stops a trial the pruner rejects."""

    def __init__(self, trial: optuna.Trial):
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(OBJECTIVE)
        if value is None:
            return
        self.trial.report(float(value), step=epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _format_params(params: Mapping[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        short = name.split(".", 1)[1]
        parts.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


class TrialObjective:
    """One trial: the base config with the trial's settings, trained on ``fit``, scored on
    ``validation`` (the test split is never touched here)."""

    def __init__(
        self, base: Config, prepared: PreparedData, space: Sequence[Dimension], logdir: Path
    ):
        self.base, self.prepared, self.space, self.logdir = base, prepared, space, logdir

    def __call__(self, trial: optuna.Trial) -> float:
        params = {dimension.name: dimension.suggest(trial) for dimension in self.space}
        config = apply_params(self.base, params)
        tf.keras.backend.clear_session()
        seed_everything(config.train.seed)
        model = build_model(self.prepared, config)
        model.compile(optimizer=make_optimizer(config))
        epochs: list[float] = []

        class _Record(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if logs and OBJECTIVE in logs:
                    epochs.append(float(logs[OBJECTIVE]))

        try:
            fit = fit_model(
                model,
                self.prepared,
                config,
                log=silent,
                callbacks=[_Record(), _PruningReport(trial)],
            )
            value = -fit.best_validation_value  # recall is stored negated (lower is better)
            trial.set_user_attr("best_epoch", fit.best_epoch)
        finally:
            best_so_far = max(epochs) if epochs else float("nan")
            write_hparams(
                self.logdir / f"trial-{trial.number:04d}",
                config,
                {OBJECTIVE: best_so_far, "epochs": float(len(epochs))},
                extra={"trial": trial.number},
            )
        return value


def progress_line(total: int, started: float, log: Log, done_before: int):
    """An Optuna callback printing one line per finished trial: its number, outcome and
    settings, the best so far, the time elapsed and the ETA of the remaining trials.

    Args:
        total: the trials the study should have; started: ``time.perf_counter()`` at the start
            of this session; done_before: trials finished before this session.
    """

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        elapsed = time.perf_counter() - started
        done_now = finished - done_before
        eta = elapsed / done_now * max(total - finished, 0) if done_now else float("nan")
        if trial.state == optuna.trial.TrialState.COMPLETE:
            outcome = f"{OBJECTIVE} {trial.value:.4f}"
        elif trial.state == optuna.trial.TrialState.PRUNED:
            last = max(trial.intermediate_values.values(), default=float("nan"))
            outcome = f"pruned at epoch {len(trial.intermediate_values)} ({last:.4f})"
        else:
            outcome = trial.state.name.lower()
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:  # no completed trial yet
            best = "best -"
        log(
            f"trial {trial.number} [{finished}/{total}] {outcome} | {best} | "
            f"{_format_params(trial.params)} | {_duration(elapsed)} elapsed, "
            f"ETA {_duration(eta) if math.isfinite(eta) else '-'}"
        )

    return callback
