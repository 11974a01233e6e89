"""Side-feature tables, one row per vocabulary index, built once from the training data.

The towers take integer vocabulary indices only and look side features up in these constant
tables. Resolving ids and parsing titles once, outside the training step, keeps the step to a few
gathers and matmuls (the fast path of the throughput issue) and makes the exported SavedModels
self-contained. Row 0 of every table is the out-of-vocabulary row: unknown everything.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from tfrs_movies.data.schema import NUM_GENRES, Ratings

_YEAR = re.compile(r"\((\d{4})\)\s*$")
_WORD = re.compile(r"[a-z0-9]+")
FIRST_YEAR = 1900  # MovieLens titles start at 1874; earlier years share the first bucket
LAST_YEAR = 2030
MAX_TITLE_TOKENS = 8
AGE_BUCKETS = (1.0, 18.0, 25.0, 35.0, 45.0, 50.0, 56.0)  # tfds bucketized_user_age values


def release_year(title: str) -> int | None:
    """The year in a MovieLens title such as ``"Toy Story (1995)"``, or None."""
    match = _YEAR.search(title.strip())
    return int(match.group(1)) if match else None


def title_words(title: str) -> list[str]:
    """Lower-cased words of a title without its trailing year."""
    return _WORD.findall(_YEAR.sub("", title).lower())


@dataclasses.dataclass(frozen=True)
class FeatureTables:
    """Side features indexed by vocabulary index (0 = out of vocabulary).

    Attributes:
        movie_genres: (num_movies + 1, NUM_GENRES) float32 multi-hot.
        movie_year: (num_movies + 1,) int32; 0 unknown, else 1 + clip(year) - FIRST_YEAR.
        movie_title_tokens: (num_movies + 1, MAX_TITLE_TOKENS) int32; 0 is padding.
        num_title_words: size of the title word vocabulary (ids 1..num_title_words).
        user_age: (num_users + 1,) int32; 0 unknown, else 1 + index in AGE_BUCKETS.
        user_gender: (num_users + 1,) int32; 0 unknown, 1 male, 2 female.
        user_occupation: (num_users + 1,) int32; 0 unknown, else 1 + tfds occupation label.
        has_demographics: whether the source had user demographics at all.
        timestamp_mean, timestamp_std: to standardize timestamps (seconds).
    """

    movie_genres: np.ndarray
    movie_year: np.ndarray
    movie_title_tokens: np.ndarray
    num_title_words: int
    user_age: np.ndarray
    user_gender: np.ndarray
    user_occupation: np.ndarray
    has_demographics: bool
    timestamp_mean: float
    timestamp_std: float

    @property
    def num_years(self) -> int:
        return LAST_YEAR - FIRST_YEAR + 2


def build_feature_tables(
    train: Ratings, user_vocab_of_row: np.ndarray, movie_vocab_of_row: np.ndarray
) -> FeatureTables:
    """Builds the tables for the users and movies of the training vocabularies.

    Args:
        train: the training split (its movie and user tables cover the whole dataset).
        user_vocab_of_row: (num_table_users,) int32 vocabulary index of each user-table row,
            0 for users not in the vocabulary.
        movie_vocab_of_row: (num_table_movies,) int32, the same for movies.

    Returns:
        The tables; rows of users/movies outside the vocabulary are left at "unknown".
    """
    num_movies = int(movie_vocab_of_row.max(initial=0))
    num_users = int(user_vocab_of_row.max(initial=0))
    in_vocab = np.flatnonzero(movie_vocab_of_row > 0)
    targets = movie_vocab_of_row[in_vocab]

    genres = np.zeros((num_movies + 1, NUM_GENRES), np.float32)
    genres[targets] = train.movie_genres[in_vocab]
    years = np.zeros(num_movies + 1, np.int32)
    words: dict[str, int] = {}
    tokens = np.zeros((num_movies + 1, MAX_TITLE_TOKENS), np.int32)
    for row, target in zip(in_vocab, targets, strict=True):
        title = str(train.movie_titles[row])
        year = release_year(title)
        if year is not None:
            years[target] = 1 + min(max(year, FIRST_YEAR), LAST_YEAR) - FIRST_YEAR
        ids = [words.setdefault(w, len(words) + 1) for w in title_words(title)]
        ids = ids[:MAX_TITLE_TOKENS]
        tokens[target, : len(ids)] = ids

    user_rows = np.flatnonzero(user_vocab_of_row > 0)
    user_targets = user_vocab_of_row[user_rows]
    age = np.zeros(num_users + 1, np.int32)
    gender = np.zeros(num_users + 1, np.int32)
    occupation = np.zeros(num_users + 1, np.int32)
    features = train.user_features
    if "bucketized_user_age" in features:
        raw_age = np.asarray(features["bucketized_user_age"], np.float32)[user_rows]
        age[user_targets] = 1 + np.searchsorted(AGE_BUCKETS, raw_age, side="right") - 1
    if "user_gender" in features:
        # tfds: True is male.
        is_male = np.asarray(features["user_gender"]).astype(bool)[user_rows]
        gender[user_targets] = np.where(is_male, 1, 2)
    if "user_occupation_label" in features:
        labels = np.asarray(features["user_occupation_label"], np.int64)[user_rows]
        occupation[user_targets] = 1 + labels

    timestamps = train.timestamp.astype(np.float64)
    return FeatureTables(
        movie_genres=genres,
        movie_year=years,
        movie_title_tokens=tokens,
        num_title_words=len(words),
        user_age=age,
        user_gender=gender,
        user_occupation=occupation,
        has_demographics=bool(features),
        timestamp_mean=float(timestamps.mean()) if timestamps.size else 0.0,
        timestamp_std=float(timestamps.std()) or 1.0 if timestamps.size else 1.0,
    )
