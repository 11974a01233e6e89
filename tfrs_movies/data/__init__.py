"""Data: every MovieLens source in one canonical schema, split and indexed for training.

The folder's job ends where the model begins: it turns a SOURCE string into a
:class:`Ratings` (users, movies and columnar ratings in the tfds schema) and that into what
training needs. One module per step:

* ``sources``: ``load_source(SOURCE)``, the one entry point; dispatches to
  ``movielens`` (GroupLens folders and zips: ``layouts`` is the table of file layouts,
  ``files`` finds them in a folder or zip, ``tables`` parses movies and users, ``ratings_file``
  the ratings, ``text`` holds the shared line checks), ``tfds_source`` and ``synthetic``;
* ``schema``: the canonical feature names, genres, occupations and the ``Ratings`` container;
* ``info``: statistics for ``tfrs-movies data info``;
* ``splits``: seeded random, temporal and leave-last-n splits;
* ``vocab``: id vocabularies (the one id <-> row mapping);
* ``prepare``: ``PreparedData`` (splits, vocabularies, side-feature tables) from a config;
* ``features``: side-feature tables for the towers.

Nothing here loads TensorFlow except the tfds source, when called: ``tfrs-movies data info`` on
a folder, a zip or synthetic data never does.
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
