"""What the Recommender returns: one :class:`Recommendation` per movie, plain and serializable."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tfrs_movies.recommend.catalogue import Catalogue


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One recommended (or similar) movie.

    Attributes:
        rank: 1-based position in the returned list.
        movie_id, title, genres: the movie.
        retrieval_score: dot product of user and movie vectors (for similar movies: cosine).
        predicted_rating: the rating model's prediction on the star scale (None for similar).
        num_ratings: training ratings of the movie.
    """

    rank: int
    movie_id: str
    title: str
    genres: str
    retrieval_score: float
    predicted_rating: float | None
    num_ratings: int

    def to_dict(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies every value, 10x slower.
        return {field.name: getattr(self, field.name) for field in _RECOMMENDATION_FIELDS}


_RECOMMENDATION_FIELDS = dataclasses.fields(Recommendation)


def records(
    catalogue: Catalogue,
    rows: Sequence[int],
    scores: Sequence[float],
    ratings: Sequence[float] | None,
) -> list[Recommendation]:
    """Ranked records of movie rows, best first.

    Args:
        catalogue: the run's movies.
        rows: (n,) movie rows in rank order.
        scores: (n,) their retrieval scores (or cosine similarities).
        ratings: (n,) their predicted ratings, or None (similar movies).
    """
    return [
        Recommendation(
            rank=i + 1,
            movie_id=str(catalogue.movies.ids[row]),
            title=str(catalogue.titles[row]),
            genres=str(catalogue.genres[row]),
            retrieval_score=float(scores[i]),
            predicted_rating=None if ratings is None else float(ratings[i]),
            num_ratings=int(catalogue.num_ratings[row]),
        )
        for i, row in enumerate(rows)
    ]
