"""One typed configuration for data, model, training, index and evaluation.

Every default lives here, with the reason for it. A config is built from defaults, optionally a
TOML or JSON file, then ``section.key=value`` overrides; each step is validated and unknown keys
or wrongly typed values raise :class:`~tfrs_movies.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tfrs_movies.errors import ConfigError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SPLITS = ("random", "temporal", "leave_last_n")
NEGATIVES = ("auto", "catalogue", "in_batch")
SCORES_DTYPES = ("auto", "float32", "bfloat16")
OPTIMIZERS = ("adam", "adagrad")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
MONITORS = ("auto", "recall", "rmse", "loss")
REFITS = ("auto", "always", "never")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the ratings come from and how they are split."""

    # None: $TFRS_MOVIES_DATA when set, else tfds:movielens/100k-ratings (see data.load_source).
    source: str | None = None
    manual_dir: str | None = None  # tfds manual_dir holding the genuine GroupLens archive
    data_dir: str | None = None  # tfds data_dir (cache of prepared datasets)
    split: str = "random"  # DESIGN's protocol: seeded random 80/20
    test_fraction: float = 0.2
    split_seed: int = 42  # fixed apart from the model seed, so sweeps share one split
    leave_last_n: int = 1  # only for split = "leave_last_n"
    # Carved from the training split for early stopping; the test split is never looked at.
    # Large, so that the epoch choice is not noise (0.05 of ml-100k held ~4 ratings per user);
    # the refit (train.refit) trains on it again afterwards.
    validation_fraction: float = 0.2
    validation_max_ratings: int = 250_000  # caps the carve on large data


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The two towers, the rating head and the retrieval loss."""

    embedding_dim: int = 64  # both towers; measured better than 32 on ml-100k
    # Members: independent (user, movie) embedding pairs of embedding_dim each, trained side by
    # side on the same batches, each with its own retrieval softmax and rating head. The towers
    # output the members' vectors concatenated, so the served score (one dot product) is their
    # sum. None: 4 with the catalogue softmax (chosen on validation, ml-100k and
    # ml-latest-small), 1 with in-batch negatives (large data: each member costs a full step).
    ensemble_size: int | None = None
    # Side features. Off by default: on ml-100k's random split, ids alone measured best on
    # every headline metric (README, "Model choices"); they matter for movies with few ratings.
    use_genres: bool = False  # movie tower: multi-hot genres
    use_year: bool = False  # movie tower: release year parsed from the title
    use_title: bool = False  # movie tower: bag of title words
    use_timestamp: bool = False  # user tower: when the rating was made
    use_demographics: bool = False  # user tower: age, gender, occupation where the data has them
    # Rating head MLP over both towers' outputs; its total width (each of ensemble_size members
    # gets units // ensemble_size).
    rating_hidden_units: tuple[int, ...] = (128, 64)
    rating_dropout: float = 0.3  # on the head's input; keeps RMSE from drifting up late in training
    # Dropout on the free coordinates of each member's query vector in the retrieval loss
    # (training only; the rating head and serving see the whole vector). 0.25 was chosen on
    # validation (README, "Issue 12 work"): NDCG@10 +1.1% (ml-100k) and +1.3%
    # (ml-latest-small) paired per user over seeds 0-3, Recall@10 level; 0.4 was no better on
    # ml-latest-small.
    query_dropout: float = 0.25
    # L2 on the embedding rows each batch looks up, each user's/movie's term weighted by
    # 1 / P(it is in a batch): an unbiased estimate of whole-table L2 at O(batch) cost per step.
    embedding_l2: float = 1e-3
    # Each user's embedding L2 is further weighted by (n + 1) ** power / its mean over users, n
    # the user's fit ratings: a user with many ratings, whose vector the data pins down, is
    # held closer to the origin than one with few. 0: the same weight for every user. 0.5 was
    # chosen on validation (README, "Issue 12 work"): Recall@10 +3-7%, NDCG@10 +3-5% on
    # ml-latest-small's carves, whose users' counts are skewed; level on ml-100k's.
    user_l2_count_power: float = 0.5
    temperature: float = 0.1  # retrieval softmax temperature
    # "catalogue": exact softmax over every movie (small catalogues); "in_batch": sampled
    # softmax with logQ correction and accidental-hit removal; "auto" picks by catalogue size.
    retrieval_negatives: str = "auto"
    catalogue_softmax_max_movies: int = 20_000  # "auto" switches to in_batch above this
    # The number type of the catalogue softmax's (users x movies) score product in training,
    # the step's costliest op. "bfloat16": inputs and scores rounded to 8 significant bits
    # (float32 sums); the step 16% faster on an AMX CPU, metrics level over seeds 0-2 of
    # both datasets (README, "Performance"). "auto": bfloat16 where the CPU multiplies it in
    # hardware (tfrs_movies.hardware), else float32. Evaluation and serving are float32.
    catalogue_scores_dtype: str = "auto"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loss weights, optimizer and the training loop."""

    retrieval_weight: float = (
        2.0  # loss = retrieval_weight * L_retrieval + rating_weight * L_rating
    )
    rating_weight: float = 1.0
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    batch_size: int = 2048  # global batch size (split across replicas under a strategy)
    learning_rate: float = 0.003
    optimizer: str = "adam"  # "adam": lazy on embedding rows (only the batch's rows move)
    seed: int = 0  # model seed: initialization, shuffling, dropout
    # Epochs without validation improvement before stopping; 0 disables. 3, not 2: validation
    # Recall@10 can dip for two epochs and then climb past its old peak (README, "Issue 12 work").
    early_stopping_patience: int = 3
    # What "improvement" means: "recall" = validation Recall@10 (the product metric; the softmax
    # loss keeps rising while recall still improves), "rmse", "loss" = weighted validation
    # loss; "auto" = recall when retrieval_weight > 0, else rmse.
    early_stopping_metric: str = "auto"
    # The model is validated, early-stopped and exported with an average over epochs of its
    # end-of-epoch weights: average = decay * average + (1 - decay) * weights; 0 turns it off.
    # Chosen on a nested validation carve of both datasets (README, "Issue 12 work").
    epoch_average_decay: float = 0.67
    # After early stopping on the validation carve, train a fresh model on the whole training
    # split for the best epoch count (as the iALS baseline is refitted). "auto": when the carve
    # holds at least 5% of the training ratings (below that, a second training adds little).
    refit: str = "auto"
    validation_max_users: int = 5000  # users sampled for validation recall (bounds its cost)
    strategy: str = "auto"  # tf.distribute strategy
    # TensorFlow's CPU pools (train/threads.py): None = two ops at once on half the cores each,
    # a 35-38 ms step against 40-43 ms with TensorFlow's default on 2 cores, same results;
    # 0 = TensorFlow's default (every core for each op); k = k threads for each op.
    intra_op_threads: int | None = None
    tensorboard: bool = True


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """The exported ScaNN index; None means "scale with the catalogue"."""

    num_leaves: int | None = None  # None: about sqrt(number of movies)
    num_leaves_to_search: int | None = None  # None: grown until target_recall is reached
    num_reordering_candidates: int | None = None  # None: chosen with num_leaves_to_search
    target_recall: float = 0.95  # recall@10 against exact search over all users
    k: int = 100  # candidates the exported index returns per query


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The final evaluation on the test split."""

    factorized_ks: tuple[int, ...] = (1, 5, 10, 50, 100)  # TFRS tutorial metric
    recall_ks: tuple[int, ...] = (10, 100)
    ndcg_k: int = 10
    baselines: bool = True  # most-popular, biased MF, EASE on the same split
    # Fit them in a child process at the lowest CPU priority while the model trains, on the CPU
    # time training leaves idle (same results; evaluation/run_baselines.py); False: in the
    # run's process, after the export.
    baselines_in_background: bool = True


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    index: IndexConfig = dataclasses.field(default_factory=IndexConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


_SECTION_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "index": IndexConfig,
    "eval": EvalConfig,
}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Converts ``value`` (from TOML, JSON or a command-line string) to ``annotation``.

    Raises:
        ConfigError: the value cannot represent the annotated type.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list like 1,2,3, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {annotation!r}")  # pragma: no cover


def _section_from_mapping(name: str, values: Mapping[str, Any], base: Any) -> Any:
    cls = _SECTION_TYPES[name]
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    updates = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key {name}.{key}; known keys in [{name}]: {', '.join(fields)}"
            )
        updates[key] = _coerce(value, hints[key], f"{name}.{key}")
    return dataclasses.replace(base, **updates)


def config_from_dict(values: Mapping[str, Any], base: Config | None = None) -> Config:
    """Builds a validated :class:`Config` from nested ``{section: {key: value}}``.

    Raises:
        ConfigError: unknown section or key, wrong type, or an invalid value.
    """
    config = base or Config()
    sections = {}
    for name, section_values in values.items():
        if name not in _SECTION_TYPES:
            raise ConfigError(
                f"unknown config section [{name}]; known sections: {', '.join(_SECTION_TYPES)}"
            )
        if not isinstance(section_values, Mapping):
            raise ConfigError(f"config section [{name}] must be a table of key = value")
        sections[name] = _section_from_mapping(name, section_values, getattr(config, name))
    config = dataclasses.replace(config, **sections)
    validate(config)
    return config


def parse_overrides(overrides: Iterable[str]) -> dict[str, dict[str, str]]:
    """Parses ``section.key=value`` strings into a nested dict of strings.

    Raises:
        ConfigError: an override is not of the form section.key=value.
    """
    nested: dict[str, dict[str, str]] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(
                f"override {item!r} is not of the form section.key=value (e.g. train.epochs=5)"
            )
        nested.setdefault(section, {})[name] = value.strip()
    return nested


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then an optional TOML/JSON file, then ``section.key=value`` overrides.

    Args:
        path: a ``.toml`` or ``.json`` file with ``[section]`` tables, or None.
        overrides: strings like ``train.rating_weight=0.5``.

    Returns:
        The validated config.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type, or invalid value.
    """
    config = Config()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        try:
            if path.suffix == ".json":
                values = json.loads(text)
            else:
                values = tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"config file {path} is not valid TOML/JSON: {error}") from None
        config = config_from_dict(values, config)
    return config_from_dict(parse_overrides(overrides), config)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate_loss_weights(retrieval_weight: float, rating_weight: float) -> None:
    """Raises ConfigError unless both weights are finite, >= 0 and not both 0."""
    for name, weight in (("retrieval_weight", retrieval_weight), ("rating_weight", rating_weight)):
        _check(
            isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0,
            f"train.{name} must be a finite number >= 0, got {weight!r}",
        )
    _check(
        retrieval_weight > 0 or rating_weight > 0,
        "train.retrieval_weight and train.rating_weight are both 0: nothing would be trained; "
        "set at least one of them > 0",
    )


def validate(config: Config) -> None:
    """Checks value ranges across the config.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    d, m, t, i, e = config.data, config.model, config.train, config.index, config.eval
    _check(d.split in SPLITS, f"data.split must be one of {SPLITS}, got {d.split!r}")
    _check(0 < d.test_fraction < 1, f"data.test_fraction must be in (0, 1), got {d.test_fraction}")
    _check(
        0 <= d.validation_fraction < 1,
        f"data.validation_fraction must be in [0, 1), got {d.validation_fraction}",
    )
    _check(
        d.validation_max_ratings >= 1,
        f"data.validation_max_ratings must be >= 1, got {d.validation_max_ratings}",
    )
    _check(d.leave_last_n >= 1, f"data.leave_last_n must be >= 1, got {d.leave_last_n}")
    _check(m.embedding_dim >= 1, f"model.embedding_dim must be >= 1, got {m.embedding_dim}")
    _check(
        m.ensemble_size is None or m.ensemble_size >= 1,
        f"model.ensemble_size must be >= 1 or unset, got {m.ensemble_size}",
    )
    _check(all(u >= 1 for u in m.rating_hidden_units), "model.rating_hidden_units must be >= 1")
    _check(
        0 <= m.rating_dropout < 1, f"model.rating_dropout must be in [0, 1), got {m.rating_dropout}"
    )
    _check(
        0 <= m.query_dropout < 1, f"model.query_dropout must be in [0, 1), got {m.query_dropout}"
    )
    _check(m.embedding_l2 >= 0, f"model.embedding_l2 must be >= 0, got {m.embedding_l2}")
    _check(
        math.isfinite(m.user_l2_count_power) and abs(m.user_l2_count_power) <= 4,
        f"model.user_l2_count_power must be a number in [-4, 4], got {m.user_l2_count_power}",
    )
    _check(m.temperature > 0, f"model.temperature must be > 0, got {m.temperature}")
    _check(
        m.retrieval_negatives in NEGATIVES,
        f"model.retrieval_negatives must be one of {NEGATIVES}, got {m.retrieval_negatives!r}",
    )
    _check(
        m.catalogue_scores_dtype in SCORES_DTYPES,
        f"model.catalogue_scores_dtype must be one of {SCORES_DTYPES}, got "
        f"{m.catalogue_scores_dtype!r}",
    )
    validate_loss_weights(t.retrieval_weight, t.rating_weight)
    _check(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    _check(
        t.intra_op_threads is None or t.intra_op_threads >= 0,
        f"train.intra_op_threads must be >= 0 (0: TensorFlow's default) or none, got "
        f"{t.intra_op_threads}",
    )
    _check(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    _check(t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}")
    _check(t.optimizer in OPTIMIZERS, f"train.optimizer must be one of {OPTIMIZERS}")
    _check(t.strategy in STRATEGIES, f"train.strategy must be one of {STRATEGIES}")
    _check(t.early_stopping_patience >= 0, "train.early_stopping_patience must be >= 0")
    _check(
        t.early_stopping_metric in MONITORS,
        f"train.early_stopping_metric must be one of {MONITORS}, got {t.early_stopping_metric!r}",
    )
    _check(
        0 <= t.epoch_average_decay < 1,
        f"train.epoch_average_decay must be in [0, 1), got {t.epoch_average_decay}",
    )
    _check(t.refit in REFITS, f"train.refit must be one of {REFITS}, got {t.refit!r}")
    _check(t.validation_max_users >= 1, "train.validation_max_users must be >= 1")
    _check(
        0 < i.target_recall <= 1, f"index.target_recall must be in (0, 1], got {i.target_recall}"
    )
    _check(i.k >= 1, f"index.k must be >= 1, got {i.k}")
    for name in ("num_leaves", "num_leaves_to_search", "num_reordering_candidates"):
        value = getattr(i, name)
        _check(value is None or value >= 1, f"index.{name} must be >= 1 or unset, got {value}")
    _check(all(k >= 1 for k in e.factorized_ks + e.recall_ks), "eval ks must be >= 1")
    _check(e.ndcg_k >= 1, f"eval.ndcg_k must be >= 1, got {e.ndcg_k}")


def config_keys() -> dict[str, Any]:
    """Every config key as ``{"section.key": annotation}`` (what overrides and searches name)."""
    return {
        f"{section}.{name}": annotation
        for section, cls in _SECTION_TYPES.items()
        for name, annotation in typing.get_type_hints(cls).items()
    }


def parse_value(name: str, text: str) -> Any:
    """Converts one command-line string to the type of config key ``name`` ("section.key").

    Raises:
        ConfigError: unknown key, or ``text`` does not represent the key's type.
    """
    annotations = config_keys()
    if name not in annotations:
        raise ConfigError(f"unknown config key {name}")
    return _coerce(text, annotations[name], name)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def config_to_toml(config: Config) -> str:
    """The config as TOML that :func:`load_config` reads back to an equal config.

    Keys whose value is None (``auto``) are left out: TOML has no null, and None is their default.
    """
    lines: list[str] = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None)
        lines.append("")
    return "\n".join(lines)


def save_config(config: Config, path: str | Path) -> None:
    """Writes the resolved config as JSON (readable back with :func:`load_config`)."""
    Path(path).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


_ABSENT = object()  # a key one of two config dicts lacks


def _shown(value: Any) -> str:
    return "absent" if value is _ABSENT else json.dumps(value)


def config_differences(
    saved: dict[str, Any], current: dict[str, Any], prefix: str = ""
) -> list[str]:
    """The keys whose values differ between two config dicts, one line each.

    Args:
        saved: the interrupted run's ``config.json``.
        current: the config asked for now, as JSON values.
        prefix: the section path of these dicts (``"model."``), for the recursion.

    Returns:
        ``"model.temperature: 0.1 in the run, 0.2 now"``-style entries in key order; a key
        missing on one side reads ``absent``.
    """
    differences = []
    for key in sorted(set(saved) | set(current)):
        before, now = saved.get(key, _ABSENT), current.get(key, _ABSENT)
        if isinstance(before, dict) and isinstance(now, dict):
            differences += config_differences(before, now, f"{prefix}{key}.")
        elif before != now:
            differences.append(f"{prefix}{key}: {_shown(before)} in the run, {_shown(now)} now")
    return differences
