"""How the model compares with EASE and iALS on other validation carves than the run's.

Issue 12 compares the model with its peers on one test split, whose paired standard error is
about 2% of Recall@10 on ml-100k. This module repeats the comparison on other seeded carves of
the same training split, without reading the test split:

* the choices are made as a run makes them, on the run's own carve (``[split_seed, RUN_CARVE]``):
  the model's epoch count by early stopping, iALS's and EASE's hyperparameters by their grids;
* on every other carve, each model is fitted on the carve's ``fit`` part with those choices and
  ranks all movies for the carve's users (their ``fit`` movies excluded);
* per user, the model's Recall@10 and NDCG@10 minus each peer's: the mean gap relative to the
  peer's mean, and its standard error (:func:`paired_gap`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from tfrs_movies.config import Config
from tfrs_movies.data.prepare import RUN_CARVE, PreparedData, carve_validation, prepare_data
from tfrs_movies.errors import ConfigError
from tfrs_movies.evaluation.baselines import EASE, EASE_GRID, ease_no_search
from tfrs_movies.evaluation.ials import IALS, choose_ials
from tfrs_movies.evaluation.metrics import ScoreFn, per_user_topn, rank_test_users
from tfrs_movies.evaluation.selection import grid_search
from tfrs_movies.experiments.grid import parse_integers
from tfrs_movies.log import Log, print_line

METRICS = ("recall@10", "ndcg@10")
PEERS = ("ease", "ials")


def paired_gap(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """How far ``values`` are above ``reference``, user by user, relative to the reference.

    Args:
        values, reference: (U,) per-user metrics of two models on the same users (U >= 2).

    Returns:
        ``(gap, standard_error)``: mean(values - reference) / mean(reference), and the standard
        error of that mean difference (sample sd / sqrt(U)) on the same scale.

    Raises:
        ValueError: shapes differ, fewer than 2 users, or the reference's mean is 0.
    """
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    if values.shape != reference.shape or values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"need two (U,) arrays with U >= 2; got {values.shape}, {reference.shape}")
    scale = reference.mean()
    if scale == 0:
        raise ValueError("the reference's mean is 0; a relative gap is undefined")
    difference = values - reference
    return (
        float(difference.mean() / scale),
        float(difference.std(ddof=1) / np.sqrt(difference.shape[0]) / scale),
    )


@dataclasses.dataclass(frozen=True)
class CarveResult:
    """One carve's comparison.

    Attributes:
        carve: the second number of the carve's seed ``[split_seed, carve]``.
        num_users: users with validation ratings in it.
        means: ``{"model" | "ease" | "ials": {metric: mean over users}}``.
        gaps: ``{peer: {metric: (gap, standard error)}}`` of the model over each peer
            (:func:`paired_gap`).
    """

    carve: int
    num_users: int
    means: dict[str, dict[str, float]]
    gaps: dict[str, dict[str, tuple[float, float]]]


@dataclasses.dataclass(frozen=True)
class CarveComparison:
    """The choices made on the run's carve and the comparison on each other carve."""

    epochs: int
    ials_params: dict[str, float]
    ease_params: dict[str, float]
    carves: list[CarveResult]

    def mean_gaps(self) -> dict[str, dict[str, float]]:
        """``{peer: {metric: mean of the carves' gaps}}``."""
        return {
            peer: {
                metric: float(np.mean([row.gaps[peer][metric][0] for row in self.carves]))
                for metric in METRICS
            }
            for peer in PEERS
        }


def parse_carves(text: str) -> list[int]:
    """Parses ``"3,4,5"`` into carve numbers (the second numbers of the carve seeds).

    Raises:
        ConfigError: an item is not an integer, repeats, or is :data:`RUN_CARVE` (the run's own
            carve, on which the choices are made); or there is none.
    """
    carves = parse_integers(text, "--carves", "carve", "3,4,5")
    if RUN_CARVE in carves:
        raise ConfigError(
            f"--carves: {RUN_CARVE} is the run's own carve, on which the choices are made; "
            "give others, e.g. 3,4,5"
        )
    return carves


def _carve_metrics(score_fn: ScoreFn, prepared: PreparedData) -> dict[str, np.ndarray]:
    # Each carve user's Recall@10 and NDCG@10, the carve's fit movies excluded.
    ranked = rank_test_users(score_fn, prepared.fit, prepared.validation, depth=10)
    return per_user_topn(*ranked, ks=(10,), ndcg_k=10)


def compare_on_carves(
    config: Config, carves: Sequence[int], log: Log = print_line
) -> CarveComparison:
    """Compares the model with EASE and iALS on other carves of the training split.

    Args:
        config: the run's config (``data.validation_fraction`` > 0: the carves' share).
        carves: second numbers of the carve seeds; the run's own (:data:`RUN_CARVE`) is where
            the choices are made, so it is refused here.
        log: the training's epoch lines, the choices, then one line per carve.

    Returns:
        The :class:`CarveComparison`.

    Raises:
        ConfigError: no carves, the run's own carve among them, or no validation share.
    """
    # TensorFlow only here: the gap arithmetic above imports without it.
    from tfrs_movies.evaluation.model import model_scores
    from tfrs_movies.train.fit import build_model, fit_model, make_optimizer, seed_everything

    carves = [int(carve) for carve in carves]
    if not carves or RUN_CARVE in carves:
        raise ConfigError(
            f"give one or more carves other than {RUN_CARVE} (the run's own carve, on which "
            f"the choices are made); got {carves}"
        )
    if config.data.validation_fraction <= 0:
        raise ConfigError("data.validation_fraction must be > 0 to carve validation parts")

    def train_model(prepared: PreparedData, train_config: Config, prefix: str):
        seed_everything(train_config.train.seed)
        model = build_model(prepared, train_config)
        model.compile(optimizer=make_optimizer(train_config))
        fit = fit_model(model, prepared, train_config, log=lambda line: log(f"{prefix}{line}"))
        return model, fit

    run = prepare_data(config, log=log)
    log("the run's carve: the epoch count by early stopping, then iALS's and EASE's grids")
    _, chosen = train_model(run, config, "run's carve: ")
    epochs = chosen.best_epoch
    ials_params = choose_ials(run.fit, run.validation, seed=config.train.seed).params
    ease_params = (
        {}  # as a run: EASE's default where it does not search
        if ease_no_search(run.fit, run.validation)
        else grid_search(EASE, EASE_GRID, run.fit, run.validation).params
    )
    log(f"chosen on the run's carve: {epochs} epochs; iALS {ials_params}; EASE {ease_params}")
    fixed = config.replace(train=dataclasses.replace(config.train, epochs=epochs))
    d = config.data
    results = []
    for carve in carves:
        prepared = carve_validation(
            run.ratings,
            run.train,
            run.test,
            d.validation_fraction,
            d.validation_max_ratings,
            seed=[d.split_seed, carve],
        )
        # Without the carve's validation part, training neither stops early nor restores a
        # best epoch on the ratings it is scored on: the model ends after ``epochs``.
        blind = dataclasses.replace(
            prepared, validation=prepared.fit.subset(np.zeros(prepared.fit.num_ratings, bool))
        )
        model, _ = train_model(blind, fixed, f"carve {carve}: ")
        per_user = {
            "model": _carve_metrics(model_scores(model, prepared), prepared),
            "ease": _carve_metrics(EASE(**ease_params).fit(prepared.fit), prepared),
            "ials": _carve_metrics(
                IALS(**ials_params, seed=config.train.seed).fit(prepared.fit), prepared
            ),
        }
        row = CarveResult(
            carve=carve,
            num_users=len(per_user["model"][METRICS[0]]),
            means={
                name: {metric: float(values[metric].mean()) for metric in METRICS}
                for name, values in per_user.items()
            },
            gaps={
                peer: {
                    metric: paired_gap(per_user["model"][metric], per_user[peer][metric])
                    for metric in METRICS
                }
                for peer in PEERS
            },
        )
        results.append(row)
        log(format_carve(row))
    return CarveComparison(
        epochs=epochs, ials_params=ials_params, ease_params=ease_params, carves=results
    )


def format_carve(row: CarveResult) -> str:
    """One line: the three models' means and the model's gap over each peer (± its SE)."""
    means = "  ".join(
        f"{name} {values['recall@10']:.4f} / {values['ndcg@10']:.4f}"
        for name, values in row.means.items()
    )
    gaps = "  ".join(
        f"vs {peer} {metric.split('@')[0]} {100 * gap:+.1f}% ± {100 * error:.1f}"
        for peer in PEERS
        for metric, (gap, error) in row.gaps[peer].items()
    )
    return f"carve {row.carve} ({row.num_users} users): {means} | {gaps}"
