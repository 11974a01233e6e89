"""The scale benchmark: data preparation, one epoch and peak memory on MovieLens-shaped data.

``scale_one_size`` measures one size in the current process; ``run_scale_subprocess`` runs it in
a fresh interpreter (``benchmark_scale.py --one-size N``) so that peak RSS is per size.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import peak_rss_bytes, timed

from tfrs_movies.config import Config, load_config
from tfrs_movies.data import load_source
from tfrs_movies.data.prepare import PreparedData, prepare_data
from tfrs_movies.data.synthetic import movielens_shape
from tfrs_movies.log import Log, print_line
from tfrs_movies.model.multitask import MovieLensModel
from tfrs_movies.train.fit import (
    build_model,
    epochs_dataset,
    fit_model,
    make_optimizer,
    seed_everything,
)

SCALE_OVERRIDES = (
    "model.retrieval_negatives=auto",
    "data.validation_fraction=0",
    "train.early_stopping_patience=0",
    "train.epochs=1",
    "train.tensorboard=false",
)


def _timed_partial_epoch(
    model: MovieLensModel,
    prepared: PreparedData,
    config: Config,
    steps: int,
    warmup_steps: int = 20,
) -> dict[str, Any]:
    """Times ``steps`` training steps the way ``fit_model`` feeds them; projects a whole epoch.

    The pipeline is the one ``fit_model`` builds (``epochs_dataset`` over every input column),
    so its memory is paid in full; only the number of steps is cut. The first ``warmup_steps``
    (tracing included) are timed apart.

    Returns:
        ``{"epoch s": projected seconds, "ex/s", "epoch": how it was projected}``.
    """
    t = config.train
    started = time.perf_counter()
    dataset, total_steps = epochs_dataset(
        prepared.model_inputs(prepared.fit), t.batch_size, t.seed, range(1)
    )
    pipeline_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(dataset.take(warmup_steps), epochs=1, verbose=0)
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(dataset.skip(warmup_steps).take(steps), epochs=1, verbose=0)
    step_seconds = (time.perf_counter() - started) / steps
    projected = pipeline_seconds + warmup_seconds + step_seconds * (total_steps - warmup_steps)
    return {
        "epoch s": projected,
        "ex/s": prepared.fit.num_ratings / projected,
        "epoch": f"projected from {steps} of {total_steps:,} steps",
    }


def scale_one_size(
    num_ratings: int,
    train: bool = True,
    seed: int = 0,
    max_epoch_steps: int | None = None,
    overrides: Sequence[str] = (),
    log: Log = print_line,
) -> dict[str, Any]:
    """Data preparation, one training epoch and peak RSS at one size (run in a fresh process).

    Args:
        num_ratings: dataset size; users and movies follow :func:`movielens_shape`.
        train: also train one epoch.
        seed: synthetic data seed.
        max_epoch_steps: when the epoch has more steps than this, time this many steps (after
            a warm-up) and project the whole epoch from them (marked in the ``epoch`` column).
        overrides: extra ``section.key=value`` config overrides (for what-if rows).
        log: receives progress lines.

    Returns:
        One table row.
    """
    users, movies = movielens_shape(num_ratings)
    source = f"synthetic:users={users},movies={movies},ratings={num_ratings},seed={seed}"
    config = load_config(None, [*SCALE_OVERRIDES, f"data.source={source}", *overrides])
    times: dict[str, float] = {}
    with timed(times, "load"):
        ratings = load_source(source)
    with timed(times, "prepare"):
        prepared = prepare_data(config, ratings=ratings, log=log)
    rss_after_prep = peak_rss_bytes()
    row: dict[str, Any] = {
        "ratings": num_ratings,
        "users": users,
        "movies": movies,
        "load s": times["load"],
        "prepare s": times["prepare"],
        "prep s": times["load"] + times["prepare"],
        "prep RSS GiB": rss_after_prep / 2**30,
    }
    if train:
        seed_everything(config.train.seed)
        model = build_model(prepared, config)
        model.compile(optimizer=make_optimizer(config))
        row["negatives"] = model.negatives
        total_steps = math.ceil(prepared.fit.num_ratings / config.train.batch_size)
        if max_epoch_steps is not None and total_steps > max_epoch_steps + 20:
            row.update(_timed_partial_epoch(model, prepared, config, max_epoch_steps))
        else:
            with timed(times, "epoch"):
                fit = fit_model(model, prepared, config, log=log)
            row["epoch s"] = times["epoch"]
            # On a shared machine the process's CPU seconds (2 threads) are the steadier cost.
            row["epoch CPU s"] = times["epoch_cpu"]
            row["ex/s"] = fit.examples_per_second
            row["epoch"] = "measured"
    row["peak RSS GiB"] = peak_rss_bytes() / 2**30
    return row


def run_scale_subprocess(
    script: Path,
    num_ratings: int,
    train: bool,
    max_epoch_steps: int | None = None,
    overrides: Sequence[str] = (),
    log: Log = print_line,
) -> dict[str, Any]:
    """Runs ``script --one-size N`` in a fresh interpreter and parses its JSON last line.

    Raises:
        RuntimeError: the child process failed (its stderr tail is logged).
    """
    command = [sys.executable, str(script), "--one-size", str(num_ratings), *overrides]
    if not train:
        command.append("--no-train")
    if max_epoch_steps is not None:
        command += ["--max-epoch-steps", str(max_epoch_steps)]
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    if process.returncode != 0:
        log(process.stderr[-3000:])
        raise RuntimeError(f"size {num_ratings:,} failed with exit code {process.returncode}")
    row = json.loads(process.stdout.strip().splitlines()[-1])
    row["process s"] = time.perf_counter() - started
    if overrides:
        row["overrides"] = " ".join(overrides)
    return row


def growth_factors(
    rows: list[dict[str, Any]], keys: Sequence[str], size_key: str = "ratings"
) -> list[dict[str, Any]]:
    """Adds ``<key>_x`` = value / previous row's value for each key (in place).

    Returns:
        ``rows``.
    """
    for previous, row in zip(rows, rows[1:], strict=False):
        row[f"{size_key}_x"] = row[size_key] / previous[size_key]
        for key in keys:
            if row.get(key) and previous.get(key):
                row[f"{key}_x"] = row[key] / previous[key]
    return rows


def extrapolate_scale(rows: list[dict[str, Any]], target: int) -> dict[str, Any]:
    """Power-law extrapolation of prep time, epoch time and peak RSS from the last two rows.

    Args:
        rows: measured rows, by increasing size (at least two).
        target: the size to extrapolate to.

    Returns:
        A row marked ``note: EXTRAPOLATED``, with each key's exponent.
    """
    a, b = rows[-2], rows[-1]
    out: dict[str, Any] = {
        "ratings": target,
        "users": movielens_shape(target)[0],
        "movies": movielens_shape(target)[1],
        "note": "EXTRAPOLATED",
    }
    for key in ("prep s", "epoch s", "peak RSS GiB"):
        if a.get(key) and b.get(key):
            exponent = math.log(b[key] / a[key]) / math.log(b["ratings"] / a["ratings"])
            out[key] = b[key] * (target / b["ratings"]) ** exponent
            out[f"{key} exponent"] = exponent
    return out
