"""The model: towers (ids and side features to vectors), the rating head, the retrieval task,
and the joint multitask ``tfrs.Model`` whose loss is
``retrieval_weight * L_retrieval + rating_weight * L_rating`` plus an L2 penalty on the
embedding rows each batch uses (``penalties``), so that a step costs O(batch), not O(vocabulary).
No I/O: the side-feature tables it looks up come from :mod:`tfrs_movies.data.features` (the
one thing it reads is the CPU's flags, through :mod:`tfrs_movies.hardware`, for
``model.catalogue_scores_dtype = "auto"``).
"""

from tfrs_movies.model.heads import RatingHead, StatelessDropout
from tfrs_movies.model.multitask import MovieLensModel
from tfrs_movies.model.tasks import CatalogueRetrieval
from tfrs_movies.model.towers import MovieTower, UserTower

__all__ = [
    "CatalogueRetrieval",
    "MovieLensModel",
    "MovieTower",
    "RatingHead",
    "StatelessDropout",
    "UserTower",
]
