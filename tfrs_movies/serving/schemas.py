"""The HTTP API's limits and its request and response bodies (pydantic models).

The models are the API's contract: FastAPI publishes them in the OpenAPI schema, validates
requests against them, and the tests validate every answer against them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from tfrs_movies.recommend.inputs import MAX_RATING, MIN_RATING

MAX_K = 100
"""Largest ``k`` any endpoint accepts; larger values are rejected with 422."""
MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted; larger bodies are rejected with 413."""
MAX_RATINGS = 1000
"""Most ratings one ``POST /v1/recommendations`` may carry."""
MAX_SEARCH_RESULTS = 100
"""Most movies one title search returns."""
MAX_USERS_PAGE = 1000
"""Most user ids one ``GET /v1/users`` returns."""
MAX_QUERY_CHARS = 200
"""Longest title search query."""
MAX_ID_CHARS = 300
"""Longest user id, movie id or title accepted in a path, query or as a rating key."""

KQuery = Annotated[int, Query(ge=1, le=MAX_K, description=f"how many movies (1-{MAX_K})")]
"""The ``k`` query parameter of the list endpoints."""
# A rating is a JSON number: strict, so that `true` or "4" are rejected instead of being
# read as 1.0 or 4.0.
Rating = Annotated[float, Field(ge=MIN_RATING, le=MAX_RATING, allow_inf_nan=False, strict=True)]
MovieKey = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]


class Movie(BaseModel):
    """A movie of the run's catalogue."""

    movie_id: str
    title: str
    genres: str
    num_ratings: int = Field(description="ratings of the movie in the training split")


class RecommendationItem(BaseModel):
    """One recommended or similar movie."""

    rank: int = Field(description="1-based position in the list")
    movie_id: str
    title: str
    genres: str
    retrieval_score: float = Field(
        description="user-movie dot product (for similar movies: cosine similarity)"
    )
    predicted_rating: float | None = Field(
        description="the rating model's prediction on the star scale (null for similar movies)"
    )
    num_ratings: int = Field(description="ratings of the movie in the training split")


class Health(BaseModel):
    """Whether the model is loaded, and which run and library versions serve it."""

    status: str
    model_loaded: bool
    run_name: str
    dataset: str | None
    format_version: int | None
    created: str | None
    versions: dict[str, str]
    num_users: int
    num_movies: int
    max_k: int
    max_body_bytes: int
    tfrs_movies_version: str


class UserList(BaseModel):
    """A page of the run's user ids (numeric ids in numeric order)."""

    count: int = Field(description="number of users in the run")
    offset: int
    user_ids: list[str]


class UserRecommendations(BaseModel):
    """Top movies for a user of the training data."""

    user_id: str
    k: int
    exclude_seen: bool
    min_ratings: int
    recommendations: list[RecommendationItem]


class RatingsRequest(BaseModel):
    """A person who is not in the training data, described by a few of their ratings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ratings": {"50": 5, "181": 4.5, "1": 3.5}, "k": 10}]},
    )

    ratings: dict[MovieKey, Rating] = Field(
        min_length=1,
        max_length=MAX_RATINGS,
        description=f"{{movie id or exact title: rating on the {MIN_RATING}-{MAX_RATING:g} star "
        "scale (a JSON number)}",
    )
    k: int = Field(10, ge=1, le=MAX_K, strict=True, description=f"how many movies (1-{MAX_K})")
    min_ratings: int = Field(
        0, ge=0, strict=True, description="skip movies with fewer training ratings"
    )


class RatedMovie(BaseModel):
    """A movie the new person rated, as understood by the server."""

    movie_id: str
    title: str
    rating: float


class NewUserRecommendations(BaseModel):
    """Top movies for a new person; the movies they rated are never recommended."""

    rated: list[RatedMovie]
    k: int
    recommendations: list[RecommendationItem]


class SimilarMovies(BaseModel):
    """Movies whose embeddings are closest (cosine) to one movie's."""

    movie: Movie
    k: int
    similar: list[RecommendationItem]


class MovieSearch(BaseModel):
    """Movies whose titles contain the query (case-insensitive), most rated first."""

    query: str
    count: int = Field(description="number of matching movies (the list may be shorter)")
    movies: list[Movie]


class ErrorBody(BaseModel):
    """Every error response."""

    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown user or movie"},
    422: {"model": ErrorBody, "description": "invalid parameter or body"},
}
"""The error answers of the endpoints that look users or movies up, for the OpenAPI schema."""
