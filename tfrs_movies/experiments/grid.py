"""The loss-weight grid: weight pairs × model seeds, their run names, configs and outcomes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from tfrs_movies.config import Config, config_from_dict
from tfrs_movies.errors import ConfigError

# Keys set per run; they are ignored when comparing a sweep's base config with a re-run's.
PER_RUN_KEYS = (("train", "retrieval_weight"), ("train", "rating_weight"), ("train", "seed"))


def format_weight(value: float) -> str:
    """``1.0 -> "1"``, ``0.1 -> "0.1"``: the shortest text that reads back to the same float."""
    return f"{value:g}" if float(f"{value:g}") == value else repr(value)


@dataclasses.dataclass(frozen=True, order=True)
class WeightPair:
    """One point of the loss-weight grid: ``loss = retrieval * L_retrieval + rating * L_rating``.

    Attributes:
        retrieval: ``train.retrieval_weight``.
        rating: ``train.rating_weight``.
    """

    retrieval: float
    rating: float

    @property
    def label(self) -> str:
        """``"R:S"`` as typed on the command line, e.g. ``"1:0.1"``."""
        return f"{format_weight(self.retrieval)}:{format_weight(self.rating)}"

    @property
    def slug(self) -> str:
        """A file-name-safe name, e.g. ``"r1-s0.1"``."""
        return f"r{format_weight(self.retrieval)}-s{format_weight(self.rating)}"


def parse_weights(text: str) -> list[WeightPair]:
    """Parses ``"R:S,R:S,..."`` (retrieval_weight:rating_weight) into weight pairs.

    Only the syntax is checked here; value ranges (e.g. both weights 0) are checked per run by the
    config validation, so one bad pair fails only its own runs.

    Args:
        text: comma-separated ``retrieval_weight:rating_weight`` pairs.

    Returns:
        The pairs in the order given.

    Raises:
        ConfigError: a pair is not two numbers separated by ':', or a pair repeats.
    """
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        retrieval, sep, rating = item.partition(":")
        try:
            if not sep:
                raise ValueError
            pair = WeightPair(float(retrieval), float(rating))
        except ValueError:
            raise ConfigError(
                f"--weights: {item!r} is not retrieval_weight:rating_weight, e.g. 1:0.1"
            ) from None
        if pair in pairs:
            raise ConfigError(f"--weights: the pair {pair.label} is listed twice")
        pairs.append(pair)
    if not pairs:
        raise ConfigError("--weights: give at least one retrieval_weight:rating_weight pair")
    return pairs


def parse_seeds(text: str) -> list[int]:
    """Parses ``"0,1,2"`` into model seeds.

    Args:
        text: comma-separated integers.

    Returns:
        The seeds in the order given.

    Raises:
        ConfigError: a seed is not an integer, or repeats.
    """
    return parse_integers(text, "--seeds", "seed", "0,1,2")


def parse_integers(text: str, option: str, noun: str, example: str) -> list[int]:
    """Parses comma-separated distinct integers given to the command-line ``option``.

    Args:
        text: e.g. ``"0, 1,2"``; empty items are skipped.
        option, noun, example: for the messages, e.g. ``"--seeds"``, ``"seed"``, ``"0,1,2"``.

    Returns:
        The integers in the order given.

    Raises:
        ConfigError: an item is not an integer or repeats, or there is none.
    """
    values: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"{option}: {item!r} is not an integer") from None
        if value in values:
            raise ConfigError(f"{option}: {noun} {value} is listed twice")
        values.append(value)
    if not values:
        raise ConfigError(f"{option}: give at least one {noun}, e.g. {example}")
    return values


def run_name(pair: WeightPair, seed: int) -> str:
    """The run directory name of one grid cell, e.g. ``"r1-s0.1-seed0"``."""
    return f"{pair.slug}-seed{seed}"


def run_config(base: Config, pair: WeightPair, seed: int, baselines: bool) -> Config:
    """The base config with this cell's weights and seed (validated).

    Args:
        base: the sweep's base config.
        pair: the cell's loss weights.
        seed: the cell's model seed.
        baselines: whether this run computes the baselines (only the first run does).

    Returns:
        The run's config.

    Raises:
        ConfigError: the weights are invalid (e.g. both 0).
    """
    return config_from_dict(
        {
            "train": {
                "retrieval_weight": pair.retrieval,
                "rating_weight": pair.rating,
                "seed": seed,
            },
            "eval": {"baselines": baselines},
        },
        base,
    )


@dataclasses.dataclass
class RunRecord:
    """The outcome of one grid cell.

    Attributes:
        pair: the loss weights.
        seed: the model seed.
        run_dir: where the run lives (``DIR/runs/<name>``).
        status: ``"done"`` (metrics.json exists), ``"failed"`` or ``"pending"`` (not run yet).
        metrics: contents of metrics.json when done.
        error: one-line error message when failed.
        skipped: done by an earlier invocation (not retrained now).
    """

    pair: WeightPair
    seed: int
    run_dir: Path
    status: str = "pending"
    metrics: dict[str, Any] | None = None
    error: str = ""
    skipped: bool = False

    def value(self, key: str) -> float:
        """A model metric (or ``fit_seconds``/``total_seconds``); NaN when not available."""
        if not self.metrics:
            return math.nan
        if key in ("fit_seconds", "total_seconds"):
            return float(self.metrics.get("training", {}).get(key, math.nan))
        return float(self.metrics.get("model", {}).get(key, math.nan))
