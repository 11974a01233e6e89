"""A baseline's hyperparameters chosen on the validation split, then refitted on the training split.

The test split is never an argument here, so it cannot leak into a choice. A baseline is given
as ``make(**params)``: an unfitted model with ``fit(ratings, log=...) -> self``, ``params()``
(its hyperparameters as recorded in ``metrics.json``) and ``model(user_rows)`` scores for
:func:`~tfrs_movies.evaluation.metrics.topn_metrics`. iALS and EASE are chosen this way
(:func:`~tfrs_movies.evaluation.ials.fit_ials_baseline`,
:func:`~tfrs_movies.evaluation.baselines.fit_ease_baseline`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import threadpoolctl

from tfrs_movies.data.schema import Ratings
from tfrs_movies.evaluation.metrics import topn_metrics
from tfrs_movies.log import Log, silent

Make = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class GridChoice:
    """The outcome of :func:`grid_search`.

    Attributes:
        params: the chosen hyperparameters (keyword arguments of ``make``).
        metric: the validation metric the choice maximized, e.g. ``"ndcg@10"``.
        value: its value at ``params``.
        rows: one dict per grid point, in grid order: its hyperparameters and ``metric``.
        seconds: wall time of the whole search.
    """

    params: dict[str, float]
    metric: str
    value: float
    rows: list[dict[str, float]]
    seconds: float


def grid_search(
    make: Make,
    grid: Mapping[str, Sequence[float]],
    fit: Ratings,
    validation: Ratings,
    metric: str = "ndcg@10",
    log: Log = silent,
    workers: int = 1,
) -> GridChoice:
    """Every point of ``grid`` fitted on ``fit`` and ranked on ``validation``.

    Each user's ``fit`` movies are excluded from their ranking, as on test. With ``workers``
    above 1, that many points are fitted and ranked at once, in threads, with BLAS held to one
    thread: for models whose fit releases the GIL (iALS: 18 points in 2.5-2.9 s, not 4.6-4.9 s
    on ml-100k, 2 cores). Each point is fitted and scored exactly as alone, so the rows and the
    choice are the same.

    Args:
        make: ``make(**point)`` builds an unfitted model (see the module docstring).
        grid: hyperparameter name → candidate values.
        fit: the ratings each candidate is fitted on.
        validation: held-out ratings over the same tables; must not be empty.
        metric: a key of :func:`topn_metrics`' result at cut-off 10 (``ndcg@10``,
            ``recall@10``, ...); the highest wins, ties go to the first in grid order.
        log: passed to every candidate's ``fit`` (its progress lines on large data).
        workers: grid points fitted at once (1: one after another).

    Returns:
        The :class:`GridChoice`.

    Raises:
        ValueError: ``validation`` is empty.
    """
    if validation.num_ratings == 0:
        raise ValueError(
            "a validation search needs validation ratings (data.validation_fraction > 0)"
        )
    started = time.perf_counter()
    names = list(grid)
    points = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(grid[name] for name in names))
    ]

    def row(point: dict[str, float]) -> dict[str, float]:
        model = make(**point).fit(fit, log=log)
        result = topn_metrics(model, fit, validation, ks=(10,), ndcg_k=10)
        return {**model.params(), metric: result[metric]}

    if workers > 1:
        # One BLAS limit around all the threads: limits set and restored by each thread would
        # interleave (a fit's own limit then restores the one already held, a no-op).
        with threadpoolctl.threadpool_limits(1, "blas"), ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(row, points))
    else:
        rows = [row(point) for point in points]
    best = max(rows, key=lambda row: row[metric])  # max keeps the first of equal values
    return GridChoice(
        params={name: best[name] for name in names},
        metric=metric,
        value=best[metric],
        rows=rows,
        seconds=time.perf_counter() - started,
    )


def choose_and_refit(
    name: str,
    make: Make,
    grid: Mapping[str, Sequence[float]],
    fit: Ratings | None,
    validation: Ratings | None,
    train: Ratings,
    no_search: str | None = None,
    log: Log = silent,
    workers: int = 1,
) -> tuple[Any, dict[str, Any]]:
    """Chooses a baseline's hyperparameters on ``validation``, then refits them on ``train``.

    Args:
        name: the baseline's name in the log line (``"ials"``, ``"ease"``).
        make: ``make(**params)`` builds an unfitted model; ``make()`` its defaults.
        grid: the candidates (see :func:`grid_search`).
        fit: the part of ``train`` the candidates are fitted on (unused with ``no_search``).
        validation: the rest of ``train``, held out for the choice (unused with ``no_search``).
        train: the whole training split the chosen setting is refitted on.
        no_search: None to search; otherwise why not (e.g. the data is too large): the
            defaults are then fitted on ``train``.
        log: receives one line naming the hyperparameters and where they came from, and the
            fits' own progress lines.
        workers: grid points fitted at once (see :func:`grid_search`).

    Returns:
        ``(model, record)``: the model fitted on ``train``, and what ``metrics.json`` keeps of
        the choice: ``{"params": {...}, "validation": {"metric": "ndcg@10", "value": ...,
        "grid_points": n}}``, with ``"validation": None`` when there was no search.

    Raises:
        ValueError: a search with an empty or missing ``validation`` or ``fit``.
    """
    if no_search is not None:
        params: dict[str, float] = {}
        source = f"defaults, no search: {no_search}"
        validation_record = None
    else:
        if fit is None or validation is None:
            raise ValueError(f"choosing {name}'s hyperparameters needs fit and validation parts")
        choice = grid_search(make, grid, fit, validation, log=log, workers=workers)
        params = choice.params
        source = (
            f"best validation {choice.metric} {choice.value:.4f} of {len(choice.rows)} "
            f"in {choice.seconds:.1f}s"
        )
        validation_record = {
            "metric": choice.metric,
            "value": choice.value,
            "grid_points": len(choice.rows),
        }
    model = make(**params).fit(train, log=log)
    settings = ", ".join(f"{key} {value:g}" for key, value in model.params().items())
    log(f"baseline {name}: {settings} ({source})")
    return model, {"params": model.params(), "validation": validation_record}
