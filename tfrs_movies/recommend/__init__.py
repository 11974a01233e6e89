"""Recommendations from a finished run directory, for callers in Python and for the REST API.

:class:`Recommender` loads a run and answers three questions: movies for a known user
(retrieve candidates from the ScaNN index, drop movies they have seen, re-score with the rating
model), movies similar to a movie, and movies for a new person from a few ratings (fold-in).
Its parts live in their own modules: ``catalogue`` (ids and titles <-> rows), ``candidates``
(filtering and the exact fallback), ``rescoring`` (the rating model, in numpy when it agrees),
``fold_in`` (new people), ``records`` (what is returned), ``inputs`` (argument checks) and
``graphs`` (the exported functions, called without TensorFlow's per-call dispatch).
Training never imports this package.
"""

from tfrs_movies.recommend.catalogue import AmbiguousTitleError, Catalogue
from tfrs_movies.recommend.recommender import Recommender
from tfrs_movies.recommend.records import Recommendation
from tfrs_movies.recommend.rescoring import DEFAULT_RERANK_WEIGHT

__all__ = [
    "DEFAULT_RERANK_WEIGHT",
    "AmbiguousTitleError",
    "Catalogue",
    "Recommendation",
    "Recommender",
]
