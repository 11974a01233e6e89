"""The API's endpoints, bound to one loaded run.

Handlers are ``async`` and compute on the event loop: a request takes a millisecond or two of
CPU, so handing it to a thread would only add switching and contention for Python's lock.
New-person requests read in the same turn of the loop are answered by one batched model call
(:mod:`~tfrs_movies.serving.batching`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from tfrs_movies.recommend import Recommendation, Recommender
from tfrs_movies.serving.batching import RequestBatcher
from tfrs_movies.serving.listing import Listing, message
from tfrs_movies.serving.schemas import (
    ERRORS,
    MAX_ID_CHARS,
    MAX_QUERY_CHARS,
    MAX_SEARCH_RESULTS,
    MAX_USERS_PAGE,
    ErrorBody,
    Health,
    KQuery,
    MovieSearch,
    NewUserRecommendations,
    RatingsRequest,
    SimilarMovies,
    UserList,
    UserRecommendations,
)

NUM_CANDIDATES = 100
"""Retrieved candidates re-ranked per request (at least ``k``)."""
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
}
"""The page loads nothing from elsewhere and runs only its own inline script."""


def page_html() -> str:
    """The web page (``static/index.html``, shipped as package data)."""
    return resources.files(__package__).joinpath("static", "index.html").read_text("utf-8")


def json_response(payload: dict[str, Any]) -> Response:
    """A 200 JSON response of plain data.

    The handlers build payloads that match their response models by construction (the tests
    validate every endpoint's answers against the models), so FastAPI's validation and second
    serialization of each response are skipped (about 6% of a worker's CPU under the load
    test, profiled).
    """
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), media_type="application/json")


def _items(records: Sequence[Recommendation]) -> list[dict[str, Any]]:
    """:class:`~tfrs_movies.serving.schemas.RecommendationItem` payloads of records."""
    return [record.to_dict() for record in records]


async def _after_new_people() -> None:
    """Yields once to the event loop before a handler computes.

    The new-person batch of a turn of the loop runs when every request read in that turn has
    started; a handler that computes at once makes the batch wait for it. Yielding first puts
    the batch (scheduled when the turn's first new person submitted) ahead of the computations
    of the requests that came after that person.
    """
    await asyncio.sleep(0)


@contextmanager
def _model_errors() -> Iterator[None]:
    """Around a recommender call: KeyError becomes 404 and ValueError 422."""
    try:
        yield
    except KeyError as error:
        raise HTTPException(404, message(error)) from None
    except ValueError as error:
        raise HTTPException(422, message(error)) from None


class Endpoints:
    """The handlers of every route, over one run.

    Args:
        recommender: the loaded run.
        listing: its movies and users as the API lists them.
        health: the ``/health`` answer (fixed for the life of the app).
    """

    def __init__(self, recommender: Recommender, listing: Listing, health: Health):
        self.recommender = recommender
        self.listing = listing
        self.health_body = json_response(health.model_dump()).body
        self.page_html = page_html()
        # New people, batched by the parameters their call shares: (k, min_ratings).
        self.new_people: RequestBatcher[Mapping[str, float], list[Recommendation]] = RequestBatcher(
            lambda key, people: recommender.recommend_for_ratings_many(
                people, k=key[0], num_candidates=max(key[0], NUM_CANDIDATES), min_ratings=key[1]
            ),
            lambda key, ratings: recommender.recommend_for_ratings(
                ratings, k=key[0], num_candidates=max(key[0], NUM_CANDIDATES), min_ratings=key[1]
            ),
        )

    def router(self) -> APIRouter:
        """An APIRouter with every route of the API."""
        router = APIRouter()
        router.add_api_route("/", self.page, include_in_schema=False)
        router.add_api_route("/health", self.health, response_model=Health, tags=["service"])
        router.add_api_route("/v1/users", self.list_users, response_model=UserList, tags=["users"])
        router.add_api_route(
            "/v1/users/{user_id}/recommendations",
            self.user_recommendations,
            response_model=UserRecommendations,
            responses=ERRORS,
            tags=["recommendations"],
        )
        router.add_api_route(
            "/v1/recommendations",
            self.new_user_recommendations,
            methods=["POST"],
            response_model=NewUserRecommendations,
            responses={**ERRORS, 413: {"model": ErrorBody, "description": "body too large"}},
            tags=["recommendations"],
        )
        # Before /v1/movies/{movie_id}/similar only for readability: the paths cannot collide
        # (different numbers of segments).
        router.add_api_route(
            "/v1/movies/similar",
            self.similar_movies,
            response_model=SimilarMovies,
            responses=ERRORS,
            tags=["movies"],
        )
        router.add_api_route(
            "/v1/movies/{movie_id}/similar",
            self.similar_movies_by_path,
            response_model=SimilarMovies,
            responses=ERRORS,
            tags=["movies"],
        )
        router.add_api_route(
            "/v1/movies",
            self.search_movies,
            response_model=MovieSearch,
            responses=ERRORS,
            tags=["movies"],
        )
        return router

    async def page(self) -> HTMLResponse:
        return HTMLResponse(self.page_html, headers=PAGE_HEADERS)

    async def health(self) -> Response:
        """The model is loaded: run name, dataset, format and library versions."""
        return Response(self.health_body, media_type="application/json")

    async def list_users(
        self,
        offset: Annotated[int, Query(ge=0, description="first user to return")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_USERS_PAGE)] = 100,
    ) -> Response:
        """User ids of the run's training data, numeric ids in numeric order."""
        users = self.listing.users
        return json_response(
            {"count": len(users), "offset": offset, "user_ids": users[offset : offset + limit]}
        )

    async def user_recommendations(
        self,
        user_id: Annotated[str, PathParam(max_length=MAX_ID_CHARS)],
        k: KQuery = 10,
        exclude_seen: Annotated[
            bool, Query(description="drop movies the user rated in training")
        ] = True,
        min_ratings: Annotated[
            int, Query(ge=0, description="drop movies with fewer training ratings")
        ] = 0,
    ) -> Response:
        """Top-k movies for a user of the training data: ScaNN retrieval, re-ranked with the
        rating model. Unknown users get 404 (use `POST /v1/recommendations` for them)."""
        await _after_new_people()
        try:
            records = self.recommender.recommend(
                user_id,
                k=k,
                num_candidates=max(k, NUM_CANDIDATES),
                exclude_seen=exclude_seen,
                min_ratings=min_ratings,
            )
        except KeyError:  # the only KeyError of recommend: an unknown user
            raise HTTPException(
                404,
                f"unknown user {user_id!r}: not in this run's training data; "
                "POST their ratings to /v1/recommendations instead",
            ) from None
        except ValueError as error:
            raise HTTPException(422, message(error)) from None
        return json_response(
            {
                "user_id": user_id,
                "k": k,
                "exclude_seen": exclude_seen,
                "min_ratings": min_ratings,
                "recommendations": _items(records),
            }
        )

    async def new_user_recommendations(self, request: RatingsRequest) -> Response:
        """Top-k movies for a person who is not in the training data, from their ratings
        (movie ids or exact titles as keys). The rated movies are never recommended."""
        listing = self.listing
        ratings: dict[str, float] = {}
        rated = []
        for key, value in request.ratings.items():
            movie = listing.movie(listing.resolve(key))
            movie_id = movie["movie_id"]
            if movie_id in ratings:
                raise HTTPException(
                    422, f"movie {movie_id} ({movie['title']!r}) is rated more than once"
                )
            ratings[movie_id] = value
            rated.append({"movie_id": movie_id, "title": movie["title"], "rating": value})
        with _model_errors():
            records = await self.new_people.submit((request.k, request.min_ratings), ratings)
        return json_response({"rated": rated, "k": request.k, "recommendations": _items(records)})

    async def similar_movies(
        self,
        movie: Annotated[
            str,
            Query(min_length=1, max_length=MAX_ID_CHARS, description="movie id or exact title"),
        ],
        k: KQuery = 10,
    ) -> Response:
        """The k movies whose embeddings are closest (cosine) to this movie's. Takes any
        title, also one with a `/` (which the path form cannot carry)."""
        await _after_new_people()
        row = self.listing.resolve(movie)
        with _model_errors():
            records = self.recommender.similar_movies(str(self.recommender.movie_ids[row]), k=k)
        return json_response({"movie": self.listing.movie(row), "k": k, "similar": _items(records)})

    async def similar_movies_by_path(
        self,
        movie_id: Annotated[
            str,
            PathParam(
                max_length=MAX_ID_CHARS,
                description="movie id (or exact title without `/`; see /v1/movies/similar)",
            ),
        ],
        k: KQuery = 10,
    ) -> Response:
        """The k movies whose embeddings are closest (cosine) to this movie's."""
        return await self.similar_movies(movie_id, k)

    async def search_movies(
        self,
        query: Annotated[
            str,
            Query(
                max_length=MAX_QUERY_CHARS,
                description="case-insensitive substring of the title; empty lists the most "
                "rated movies",
            ),
        ] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 20,
    ) -> Response:
        """Movies whose titles contain the query, most rated first."""
        await _after_new_people()
        count, rows = self.listing.search(query, limit)
        movies = [self.listing.movie(row) for row in rows]
        return json_response({"query": query, "count": count, "movies": movies})
