"""Towers, the rating head and the joint multitask model."""

from tfrs_movies.model.features import FeatureTables, build_feature_tables
from tfrs_movies.model.multitask import MovieLensModel, RatingHead
from tfrs_movies.model.towers import MovieTower, UserTower

__all__ = [
    "FeatureTables",
    "MovieLensModel",
    "MovieTower",
    "RatingHead",
    "UserTower",
    "build_feature_tables",
]
