"""The training benchmark: our model's examples per second under a preset, beside the tutorial.

``run_training_benchmark`` loads the data once, trains the tutorial re-implementation
(:mod:`tutorial`) with and without its training-time metrics, then ours as ``train_and_evaluate``
fits it (without and with op determinism), all in one process; each measurement is repeated
and the run with the median examples per second is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1; must load before TensorFlow)

# isort: split
import tensorflow as tf
from common import default_data_source, timed
from tensorflow.python.framework import config as tf_framework_config
from tutorial import run_tutorial

from tfrs_movies.config import Config, load_config
from tfrs_movies.data import load_source
from tfrs_movies.data.prepare import prepare_data
from tfrs_movies.data.schema import Ratings
from tfrs_movies.log import Log, print_line, silent
from tfrs_movies.train.fit import build_model, fit_model, make_optimizer, seed_everything
from tfrs_movies.train.threads import configure_threads

TUTORIAL_OVERRIDES = (
    "model.embedding_dim=32",
    "model.ensemble_size=1",  # the tutorial's one pair of towers
    "model.rating_hidden_units=256,128",
    # The tutorial's model size and optimizer; the retrieval loss is ours (exact softmax over the
    # catalogue). With in-batch negatives both implementations spend most of each step on the
    # same 8192 x 8192 logits and run at the same speed.
    "model.retrieval_negatives=catalogue",
    "model.use_genres=false",
    "model.use_year=false",
    "model.use_title=false",
    "model.use_timestamp=false",
    "model.use_demographics=false",
    # The tutorial has neither dropout nor L2 nor a softmax temperature.
    "model.rating_dropout=0",
    "model.embedding_l2=0",
    "model.temperature=1",
    "train.batch_size=8192",
    "train.optimizer=adagrad",
    "train.learning_rate=0.1",
    "train.epochs=3",
    "train.retrieval_weight=1",
    "train.rating_weight=1",
    "train.early_stopping_patience=0",
    "train.tensorboard=false",
    "data.validation_fraction=0",
    "data.test_fraction=0.2",
    "data.split=random",
)
PRESETS: dict[str, tuple[str, ...]] = {"tutorial": TUTORIAL_OVERRIDES, "default": ()}


def run_ours(
    config: Config,
    ratings: Ratings | None = None,
    deterministic: bool = True,
    log: Log = print_line,
) -> dict[str, Any]:
    """Prepares data, builds and fits our model as ``train_and_evaluate`` does (no export/eval).

    Args:
        config: the resolved config.
        ratings: the dataset, or None to load ``config.data.source``.
        deterministic: seed with ``seed_everything`` (op determinism on, as real runs do);
            False seeds with op determinism off.
        log: receives the fit's progress lines.

    Returns:
        dict with ``examples_per_s`` (fit epochs only, tracing included),
        ``steady_examples_per_s`` (epochs after the first), ``prep_seconds`` (split +
        vocabularies), ``build_seconds``, ``fit_seconds``, ``wall_seconds`` and per-epoch data.
    """
    times: dict[str, float] = {}
    with timed(times, "prep"):
        prepared = prepare_data(config, ratings=ratings, log=silent)
    with timed(times, "build"):
        if deterministic:
            seed_everything(config.train.seed)
        else:
            # No public API turns op determinism off again once an earlier run turned it on.
            tf_framework_config.disable_op_determinism()
            tf.keras.utils.set_random_seed(config.train.seed)
        model = build_model(prepared, config)
        model.compile(optimizer=make_optimizer(config))
    with timed(times, "fit"):
        fit = fit_model(model, prepared, config, log=log)
    epoch_seconds = [h["seconds"] for h in fit.history]
    steady = sum(epoch_seconds[1:])
    n = prepared.fit.num_ratings
    return {
        "examples_per_s": fit.examples_per_second,
        "steady_examples_per_s": n * (len(epoch_seconds) - 1) / steady if steady else None,
        "prep_seconds": times["prep"],
        "build_seconds": times["build"],
        "fit_seconds": times["fit"],
        "fit_cpu_seconds": times["fit_cpu"],
        "examples_per_cpu_s": n * len(epoch_seconds) / times["fit_cpu"],
        "wall_seconds": times["prep"] + times["build"] + times["fit"],
        "epoch_seconds": epoch_seconds,
        "epochs": len(epoch_seconds),
        "fit_examples": n,
        "negatives": model.negatives,
    }


def load_benchmark_config(
    preset: str, data: str | None, epochs: int | None, overrides: Sequence[str] = ()
) -> Config:
    """The config of a preset, with ``--data``/``--epochs`` and extra overrides applied.

    Args:
        preset: a key of :data:`PRESETS`.
        data: the SOURCE; None uses :func:`common.default_data_source`.
        epochs: replaces ``train.epochs`` when given.
        overrides: extra ``section.key=value`` items.

    Returns:
        The resolved config.

    Raises:
        ValueError: unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    items = list(PRESETS[preset]) + list(overrides)
    items.append(f"data.source={data or default_data_source()}")
    if epochs is not None:
        items.append(f"train.epochs={epochs}")
    return load_config(None, items)


def median_run(measure: Callable[[], dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Runs ``measure`` ``repeats`` times; returns the run with the median ``examples_per_s``,
    with every run's value under ``examples_per_s_runs``."""
    runs = sorted((measure() for _ in range(repeats)), key=lambda r: r["examples_per_s"])
    median = dict(runs[(len(runs) - 1) // 2])
    median["examples_per_s_runs"] = [r["examples_per_s"] for r in runs]
    return median


def _row(name: str, result: dict[str, Any], load_seconds: float) -> dict[str, Any]:
    return {
        "model": name,
        "runs": " ".join(f"{v:,.0f}" for v in result["examples_per_s_runs"]),
        "ex/s (all epochs)": result["examples_per_s"],
        "ex/s (epochs 2+)": result["steady_examples_per_s"],
        "fit s": result["fit_seconds"],
        "fit CPU s": result["fit_cpu_seconds"],
        "ex/CPU-s": result["examples_per_cpu_s"],
        "wall s (incl. prep)": result["wall_seconds"] + load_seconds,
        "epoch s": " ".join(f"{s:.2f}" for s in result["epoch_seconds"]),
    }


def run_training_benchmark(
    preset: str = "tutorial",
    data: str | None = None,
    epochs: int | None = None,
    overrides: Sequence[str] = (),
    compare_tutorial: bool | None = None,
    nondeterministic_too: bool = True,
    repeats: int = 3,
    log: Log = print_line,
) -> dict[str, Any]:
    """Measures our model under a preset and (for the tutorial preset) the tutorial, in one process.

    The tutorial runs first (op determinism off), then ours without and with op determinism
    (``train_and_evaluate`` turns it on; the difference is reported separately).

    Args:
        preset: a key of :data:`PRESETS`.
        data: the SOURCE; None uses :func:`common.default_data_source`.
        epochs: replaces the preset's epochs when given.
        overrides: extra ``section.key=value`` items.
        compare_tutorial: also train the tutorial; None means "for the tutorial preset".
        nondeterministic_too: also measure ours with op determinism off.
        repeats: runs of each measurement; the median one (by examples per second) is kept.
        log: receives progress lines.

    Returns:
        ``{"rows": table rows, "results": every measurement by name, "ours": the deterministic
        run of ours, "ratio": ours / tutorial (None without the tutorial), "load_seconds",
        "config"}``.
    """
    config = load_benchmark_config(preset, data, epochs, overrides)
    # As train_and_evaluate does, before TensorFlow starts: the tutorial shares the pools.
    configure_threads(config.train.intra_op_threads)
    log(
        f"preset {preset}: data {config.data.source}; batch {config.train.batch_size}, "
        f"epochs {config.train.epochs}, negatives {config.model.retrieval_negatives}, "
        f"validation {config.data.validation_fraction}"
    )
    times: dict[str, float] = {}
    with timed(times, "load"):
        ratings = load_source(config.data.source)
    if compare_tutorial is None:
        compare_tutorial = preset == "tutorial"
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    if compare_tutorial:
        for metrics in (False, True):
            name = f"tutorial ({'with' if metrics else 'without'} metrics)"
            log(f"running {name} ...")
            results[name] = median_run(
                lambda metrics=metrics: run_tutorial(
                    ratings,
                    compute_metrics=metrics,
                    epochs=config.train.epochs,
                    batch_size=config.train.batch_size,
                ),
                repeats,
            )
            rows.append(_row(name, results[name], times["load"]))
    if nondeterministic_too:
        name = "ours (no op determinism)"
        log("running ours without op determinism ...")
        results[name] = median_run(
            lambda: run_ours(config, ratings, deterministic=False, log=log), repeats
        )
        rows.append(_row(name, results[name], times["load"]))
    log("running ours as train_and_evaluate does (op determinism on) ...")
    ours = median_run(lambda: run_ours(config, ratings, deterministic=True, log=log), repeats)
    results["ours"] = ours
    rows.append(_row("ours", ours, times["load"]))
    ratio = None
    if compare_tutorial:
        without, with_metrics = (
            results["tutorial (without metrics)"],
            results["tutorial (with metrics)"],
        )
        ratio = {
            "all_epochs_vs_no_metrics": ours["examples_per_s"] / without["examples_per_s"],
            "all_epochs_vs_with_metrics": ours["examples_per_s"] / with_metrics["examples_per_s"],
            "cpu_vs_no_metrics": ours["examples_per_cpu_s"] / without["examples_per_cpu_s"],
            "cpu_vs_with_metrics": ours["examples_per_cpu_s"] / with_metrics["examples_per_cpu_s"],
        }
    return {
        "rows": rows,
        "results": results,
        "ours": ours,
        "ratio": ratio,
        "load_seconds": times["load"],
        "config": config,
    }
