"""Training step time at a fixed batch size for several vocabulary sizes, in one process.

With row-sparse gradients (L2 on the batch's rows only) and a lazy optimizer, a step's cost
depends on the batch, not on the number of users and movies: ``vocabulary_step_times`` checks
that by timing the same number of steps of the real training loop for each vocabulary size
(median of ``repeats`` timings, after a warm-up that includes tracing).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfrs_movies.config import load_config
from tfrs_movies.data import synthetic_ratings
from tfrs_movies.data.prepare import prepare_data
from tfrs_movies.log import silent
from tfrs_movies.train.fit import build_model, epochs_dataset, make_optimizer, seed_everything

# In-batch negatives for every size: the catalogue softmax costs O(movies) per step by design.
STEP_OVERRIDES = (
    "model.retrieval_negatives=in_batch",
    "data.validation_fraction=0",
    "train.early_stopping_patience=0",
    "train.tensorboard=false",
)


def step_seconds(
    num_users: int,
    num_movies: int,
    num_ratings: int,
    steps: int,
    repeats: int = 3,
    warmup_steps: int = 20,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Median seconds per training step for one vocabulary size.

    Args:
        num_users, num_movies: the synthetic vocabulary sizes.
        num_ratings: synthetic ratings (enough that most users and movies occur in training).
        steps: steps per timing.
        repeats: timings; the median is reported.
        warmup_steps: steps run (and traced) before timing.
        overrides: extra ``section.key=value`` config overrides (batch size, optimizer, ...).

    Returns:
        One table row: vocabulary sizes, batch size, median and every step time (ms).
    """
    config = load_config(None, [*STEP_OVERRIDES, *overrides])
    ratings = synthetic_ratings(num_users, num_movies, num_ratings, seed=0)
    prepared = prepare_data(config, ratings=ratings, log=silent)
    seed_everything(config.train.seed)
    model = build_model(prepared, config)
    model.compile(optimizer=make_optimizer(config))
    batch_size = config.train.batch_size
    dataset, _ = epochs_dataset(
        prepared.model_inputs(prepared.fit), batch_size, config.train.seed, range(10_000)
    )
    batches = iter(dataset.repeat())
    model.fit(batches, steps_per_epoch=warmup_steps, epochs=1, verbose=0)
    laps = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        laps.append((time.perf_counter() - started) / steps * 1e3)
    return {
        "users": prepared.num_users,
        "movies": prepared.num_movies,
        "batch": batch_size,
        "optimizer": config.train.optimizer,
        "step ms": float(np.median(laps)),
        "step ms (each)": " ".join(f"{lap:.2f}" for lap in laps),
    }


def vocabulary_step_times(
    users: Sequence[int],
    movies_per_user: float = 0.384,
    ratings_per_user: float = 20.0,
    steps: int = 200,
    repeats: int = 3,
    overrides: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Step times for each user-vocabulary size, movies growing in proportion (ml-25m's ratio).

    Args:
        users: user vocabulary sizes, e.g. (10_000, 160_000).
        movies_per_user: movies = users * this (0.384 is ml-25m's 62,423 / 162,541).
        ratings_per_user: ratings = users * this, so every size has the same data per user.
        steps, repeats: see :func:`step_seconds`.
        overrides: extra config overrides.

    Returns:
        One row per size, with ``step_x``: step time relative to the smallest size.
    """
    rows = [
        step_seconds(
            n,
            round(n * movies_per_user),
            round(n * ratings_per_user),
            steps,
            repeats,
            overrides=overrides,
        )
        for n in users
    ]
    for row in rows:
        row["step_x"] = row["step ms"] / rows[0]["step ms"]
    return rows
