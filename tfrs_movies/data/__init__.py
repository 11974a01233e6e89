"""Data layer: sources in one canonical schema, splits and vocabularies.

Nothing here imports TensorFlow except the tfds source, which does so when called.
"""

from __future__ import annotations

from tfrs_movies.data.info import describe, format_description
from tfrs_movies.data.schema import GENRES, OCCUPATIONS, Ratings
from tfrs_movies.data.sources import DEFAULT_SOURCE, default_source, load_source
from tfrs_movies.data.splits import (
    SPLIT_METHODS,
    leave_last_n_split,
    random_split,
    split_ratings,
    temporal_split,
)
from tfrs_movies.data.synthetic import synthetic_ratings
from tfrs_movies.data.vocab import OOV_INDEX, Vocabulary, build_vocabularies

__all__ = [
    "DEFAULT_SOURCE",
    "GENRES",
    "OCCUPATIONS",
    "OOV_INDEX",
    "SPLIT_METHODS",
    "Ratings",
    "Vocabulary",
    "build_vocabularies",
    "default_source",
    "describe",
    "format_description",
    "leave_last_n_split",
    "load_source",
    "random_split",
    "split_ratings",
    "synthetic_ratings",
    "temporal_split",
]
