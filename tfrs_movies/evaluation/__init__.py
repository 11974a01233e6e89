"""Offline evaluation: metrics, reference baselines, the trained model, and the exported pipeline.

``metrics`` defines every top-N and rating metric once (over :class:`UserItems` sets);
``baselines`` fits the reference models (most popular, bias only, biased MF, EASE, and iALS
from ``ials``, chosen on the validation split); ``model``
evaluates a trained model on the test split as DESIGN's protocol says; ``pipeline`` scores an
exported run's :class:`~tfrs_movies.recommend.Recommender` once the run is complete and records
the result in its ``metrics.json``. Nothing here trains the multitask model.

``evaluate_pipeline`` is imported from :mod:`tfrs_movies.evaluation.pipeline` and not re-exported
here: it loads TensorFlow and ScaNN with the Recommender, while ``tfrs-movies evaluate`` and
``compare`` import this package for :func:`format_metrics` and must start fast (3.2 s vs 0.13 s).
"""

from tfrs_movies.evaluation.baseline_suite import evaluate_baselines
from tfrs_movies.evaluation.baselines import EASE, BiasedMF, BiasOnly, MostPopular
from tfrs_movies.evaluation.ials import IALS, choose_ials
from tfrs_movies.evaluation.metrics import (
    ScoreFn,
    per_user_topn,
    rank_test_users,
    rating_metrics,
    topn_metrics,
    topn_metrics_from_lists,
)
from tfrs_movies.evaluation.model import (
    HEADLINE_METRICS,
    evaluate_model,
    format_metrics,
    model_scores,
    protocol,
)
from tfrs_movies.evaluation.user_items import UserItems

__all__ = [
    "EASE",
    "HEADLINE_METRICS",
    "IALS",
    "BiasOnly",
    "BiasedMF",
    "MostPopular",
    "ScoreFn",
    "UserItems",
    "choose_ials",
    "evaluate_baselines",
    "evaluate_model",
    "format_metrics",
    "model_scores",
    "per_user_topn",
    "protocol",
    "rank_test_users",
    "rating_metrics",
    "topn_metrics",
    "topn_metrics_from_lists",
]
