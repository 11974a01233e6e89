"""Prepared data: the splits, vocabularies and side-feature tables one run trains and evaluates on.

``prepare_data(config)`` loads the configured source (unless given the ratings), splits it as the
config says, carves the validation split out of the training split, builds the vocabularies from
the fitted part only and the side-feature tables, and returns them as one :class:`PreparedData`.
Training, evaluation and export all take that value; nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from tfrs_movies.config import Config
from tfrs_movies.data.features import FeatureTables, build_feature_tables
from tfrs_movies.data.schema import Ratings
from tfrs_movies.data.sources import load_source
from tfrs_movies.data.splits import split_ratings
from tfrs_movies.data.vocab import build_vocabularies
from tfrs_movies.errors import ConfigError
from tfrs_movies.log import Log, print_line

RUN_CARVE = 1
"""The second number of a run's validation-carve seed, ``[data.split_seed, RUN_CARVE]``."""


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Everything the model and the evaluation need, derived from the data and the config.

    Attributes:
        ratings: the whole dataset (its tables define the dataset index space).
        train: the training split (``fit`` ∪ ``validation``): what "seen" means at evaluation.
        fit: the part of ``train`` the model is fitted on; vocabularies come from it.
        validation: the part of ``train`` held out for early stopping (may be empty).
        test: the test split.
        user_vocab_of_row: (num_table_users,) int32 vocabulary index of each user-table row.
        movie_vocab_of_row: (num_table_movies,) int32, the same for movies; 0 = out of vocab.
        num_users, num_movies: vocabulary sizes (without the OOV row).
        tables: side-feature tables per vocabulary index.
        global_mean: mean rating of ``fit``.
        movie_frequencies: (num_movies + 1,) ratings per movie vocabulary index in ``fit``.
    """

    ratings: Ratings
    train: Ratings
    fit: Ratings
    validation: Ratings
    test: Ratings
    user_vocab_of_row: np.ndarray
    movie_vocab_of_row: np.ndarray
    num_users: int
    num_movies: int
    tables: FeatureTables
    global_mean: float
    movie_frequencies: np.ndarray

    def movie_row_of_vocab(self) -> np.ndarray:
        """(num_movies + 1,) dataset movie-table row of each vocabulary index; -1 for OOV."""
        rows = np.full(self.num_movies + 1, -1, np.int64)
        in_vocab = np.flatnonzero(self.movie_vocab_of_row > 0)
        rows[self.movie_vocab_of_row[in_vocab]] = in_vocab
        return rows

    def user_row_of_vocab(self) -> np.ndarray:
        """(num_users + 1,) dataset user-table row of each vocabulary index; -1 for OOV."""
        rows = np.full(self.num_users + 1, -1, np.int64)
        in_vocab = np.flatnonzero(self.user_vocab_of_row > 0)
        rows[self.user_vocab_of_row[in_vocab]] = in_vocab
        return rows

    def model_inputs(self, split: Ratings) -> dict[str, np.ndarray]:
        """Integer model inputs of a split: ``user``, ``movie``, ``rating``, ``timestamp``."""
        return {
            "user": self.user_vocab_of_row[split.user_index].astype(np.int32),
            "movie": self.movie_vocab_of_row[split.movie_index].astype(np.int32),
            "rating": split.rating.astype(np.float32),
            "timestamp": split.timestamp.astype(np.float32),
        }


def prepare_data(
    config: Config, ratings: Ratings | None = None, log: Log = print_line
) -> PreparedData:
    """Loads (unless given), splits and indexes the data as the config says.

    Args:
        config: the ``data`` section says the source, the split and the validation share.
        ratings: use this dataset instead of loading ``config.data.source``.
        log: receives one summary line (sizes of the splits and vocabularies).

    Returns:
        The splits, vocabulary indices, side-feature tables and training statistics.

    Raises:
        DataError: the source cannot be read.
        ConfigError: the split leaves no training or no test ratings.
    """
    d = config.data
    if ratings is None:
        ratings = load_source(d.source, manual_dir=d.manual_dir, data_dir=d.data_dir)
    train, test = split_ratings(
        ratings,
        method=d.split,
        test_fraction=d.test_fraction,
        seed=d.split_seed,
        leave_last_n=d.leave_last_n,
    )
    if train.num_ratings == 0 or test.num_ratings == 0:
        raise ConfigError(
            f"the {d.split} split of {ratings.name} left {train.num_ratings} training and "
            f"{test.num_ratings} test ratings; both must be non-empty"
        )
    # Seeded apart from the test split so the test split never influences training choices.
    prepared = carve_validation(
        ratings,
        train,
        test,
        d.validation_fraction,
        d.validation_max_ratings,
        seed=[d.split_seed, RUN_CARVE],
    )
    fit, validation = prepared.fit, prepared.validation
    log(
        f"data: {ratings.name}: {ratings.num_ratings:,} ratings; split {d.split} "
        f"(seed {d.split_seed}): fit {fit.num_ratings:,}, validation {validation.num_ratings:,}, "
        f"test {test.num_ratings:,}; vocabulary {prepared.num_users:,} users, "
        f"{prepared.num_movies:,} movies"
    )
    return prepared


def carve_validation(
    ratings: Ratings,
    train: Ratings,
    test: Ratings,
    fraction: float,
    max_ratings: int,
    seed: Sequence[int],
) -> PreparedData:
    """Holds out a seeded random share of ``train`` as the validation part; indexes the splits.

    Args:
        ratings: the whole dataset (its tables).
        train, test: its training and test splits.
        fraction: share of ``train`` held out (each rating independently); 0 holds out none.
        max_ratings: the share is lowered so that about this many ratings at most are held out.
        seed: numpy seed of the carve. A run uses ``[data.split_seed, RUN_CARVE]``; other
            seeds give other carves of the same training split
            (:mod:`tfrs_movies.experiments.carves`).

    Returns:
        The prepared data, vocabularies built from the part that is not held out (``fit``).
    """
    if fraction > 0:
        share = min(fraction, max_ratings / train.num_ratings)
        is_validation = np.random.default_rng(list(seed)).random(train.num_ratings) < share
    else:
        is_validation = np.zeros(train.num_ratings, bool)
    return _indexed(ratings, train, train.subset(~is_validation), train.subset(is_validation), test)


def refit_data(prepared: PreparedData) -> PreparedData:
    """The same splits with the whole training split to fit on and no validation part.

    For the refit after early stopping (``train.refit``): vocabularies, side-feature tables,
    the global mean and the movie frequencies are rebuilt from ``train``, so users and movies
    whose only training ratings fell in the validation carve get rows of their own.
    """
    empty = prepared.train.subset(np.zeros(prepared.train.num_ratings, bool))
    return _indexed(prepared.ratings, prepared.train, prepared.train, empty, prepared.test)


def _indexed(
    ratings: Ratings, train: Ratings, fit: Ratings, validation: Ratings, test: Ratings
) -> PreparedData:
    """Builds the vocabularies and tables from ``fit`` and bundles the splits."""
    user_vocab, movie_vocab = build_vocabularies(fit)
    user_vocab_of_row = np.asarray(user_vocab.lookup(ratings.user_ids), np.int32)
    movie_vocab_of_row = np.asarray(movie_vocab.lookup(ratings.movie_ids), np.int32)
    num_movies = int(movie_vocab_of_row.max())
    frequencies = np.bincount(movie_vocab_of_row[fit.movie_index], minlength=num_movies + 1)
    return PreparedData(
        ratings=ratings,
        train=train,
        fit=fit,
        validation=validation,
        test=test,
        user_vocab_of_row=user_vocab_of_row,
        movie_vocab_of_row=movie_vocab_of_row,
        num_users=int(user_vocab_of_row.max()),
        num_movies=num_movies,
        tables=build_feature_tables(fit, user_vocab_of_row, movie_vocab_of_row),
        global_mean=float(fit.rating.mean()),
        movie_frequencies=frequencies.astype(np.int64),
    )
