"""REST API and a small web page over a :class:`~tfrs_movies.recommender.Recommender`.

Start it with ``tfrs-movies serve RUN_DIR [--host 127.0.0.1] [--port 8000]``, or from code::

    from tfrs_movies.serving import create_app
    app = create_app("runs/ml100k")  # any ASGI server can run it

The run is loaded once, when the app is created. Endpoints (JSON; OpenAPI docs at ``/docs``):

    GET  /                                     the web page (plain HTML + JS, no external assets)
    GET  /health                               model loaded, run name, library versions
    GET  /v1/users?offset=0&limit=100          user ids of the run (for pickers)
    GET  /v1/users/{user_id}/recommendations   ?k=10&exclude_seen=true&min_ratings=0
    POST /v1/recommendations                   {"ratings": {"<movie id or title>": 4.5}, "k": 10}
    GET  /v1/movies/{movie_id}/similar         ?k=10
    GET  /v1/movies?query=star+wars&limit=20   case-insensitive title search, most rated first

Errors never come back as 500 for bad input: every error body is ``{"detail": "<message>"}``
(validation errors also list ``errors``). Invalid parameters or bodies, ratings outside
0.5-5, k above :data:`MAX_K` and ambiguous titles give 422; unknown users and movies 404;
bodies over :data:`MAX_BODY_BYTES` 413.

Handlers are ``async`` and compute on the event loop: a request takes a millisecond or two of
CPU, so handing it to a thread would only add switching and contention for Python's lock.
Throughput comes from processes instead: ``--workers N`` starts N server processes, each with
the model loaded, single-threaded numpy and TensorFlow, and its own listening socket on the
same port (``SO_REUSEPORT``), among which the kernel spreads connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tfrs_movies import __version__
from tfrs_movies.errors import ArtifactError, TfrsMoviesError
from tfrs_movies.recommender import Recommender, verify_run

try:  # Swagger UI and ReDoc served from the package, so /docs works offline.
    from fastapi_offline import FastAPIOffline as _new_app
except ImportError:  # pragma: no cover - falls back to FastAPI's CDN-hosted docs
    _new_app = FastAPI

logger = logging.getLogger(__name__)

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
"""Longest user id, movie id or title accepted in a path or as a rating key."""
NUM_CANDIDATES = 100
"""Retrieved candidates re-ranked per request (at least ``k``)."""
KQuery = Annotated[int, Query(ge=1, le=MAX_K, description=f"how many movies (1-{MAX_K})")]
"""The ``k`` query parameter of the list endpoints."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# ---------------------------------------------------------------------------------- schemas


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

    ratings: dict[
        Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)],
        Annotated[float, Field(ge=0.5, le=5.0, allow_inf_nan=False)],
    ] = Field(
        min_length=1,
        max_length=MAX_RATINGS,
        description="{movie id or exact title: rating on the 0.5-5 star scale}",
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


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown user or movie"},
    422: {"model": ErrorBody, "description": "invalid parameter or body"},
}

# ------------------------------------------------------------------------------- middleware


class BodySizeLimit:
    """ASGI middleware: answers 413 to request bodies over ``max_bytes``.

    Checks ``Content-Length`` first, then counts the bytes actually received (chunked bodies
    have no length), buffering at most ``max_bytes`` before handing the body on.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse(
            {"detail": f"request body is larger than {self.max_bytes} bytes"}, status_code=413
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await JSONResponse({"detail": "invalid Content-Length"}, 400)(
                        scope, receive, send
                    )
                    return
                if length > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ------------------------------------------------------------------------------------- app


class _Catalogue:
    """Lookups the API needs on top of the recommender: ids, titles, search, user order."""

    def __init__(self, recommender: Recommender):
        self.movie_ids = [str(m) for m in recommender.movie_ids.tolist()]
        self.titles = [str(t) for t in recommender.titles.tolist()]
        self.genres = [str(g) for g in recommender.genres.tolist()]
        self.num_ratings = [int(n) for n in recommender.num_ratings.tolist()]
        self.id_row = {movie_id: row for row, movie_id in enumerate(self.movie_ids)}
        self.title_rows: dict[str, list[int]] = {}
        for row, title in enumerate(self.titles):
            self.title_rows.setdefault(title, []).append(row)
        # Search results come most rated first, then by title.
        self.popular_rows = sorted(
            range(len(self.titles)), key=lambda row: (-self.num_ratings[row], self.titles[row])
        )
        # Titles as queries are normalized: single spaces, casefolded.
        self.search_titles = [" ".join(title.split()).casefold() for title in self.titles]
        users = [str(u) for u in recommender.user_ids.tolist()]
        self.user_set = set(users)
        self.users = sorted(
            users, key=lambda u: (0, int(u), u) if u.isdigit() and len(u) < 19 else (1, 0, u)
        )

    def movie(self, row: int) -> dict[str, Any]:
        """A :class:`Movie` as plain data."""
        return {
            "movie_id": self.movie_ids[row],
            "title": self.titles[row],
            "genres": self.genres[row],
            "num_ratings": self.num_ratings[row],
        }

    def resolve(self, key: str) -> int:
        """Row of a movie given by id or exact title.

        Raises:
            HTTPException: 404 unknown movie; 422 a title shared by several movies.
        """
        row = self.id_row.get(key)
        if row is not None:
            return row
        rows = self.title_rows.get(key, [])
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            ids = ", ".join(self.movie_ids[r] for r in rows)
            raise HTTPException(
                422, f"title {key!r} is ambiguous: it names movies {ids}; use an id"
            )
        raise HTTPException(
            404, f"unknown movie {key!r}: not a movie id or exact title of this run"
        )

    def search(self, query: str, limit: int) -> tuple[int, list[int]]:
        needle = " ".join(query.split()).casefold()
        if not needle:
            return len(self.popular_rows), self.popular_rows[:limit]
        matches = [row for row in self.popular_rows if needle in self.search_titles[row]]
        return len(matches), matches[:limit]


def _items(records) -> list[dict[str, Any]]:
    """:class:`RecommendationItem` payloads of recommender records."""
    return [record.to_dict() for record in records]


def _json(payload: dict[str, Any]) -> Response:
    """A 200 JSON response of plain data.

    The handlers build payloads that match their response models by construction (the tests
    validate every endpoint's answers against the models), so FastAPI's validation and second
    serialization of each response are skipped (about 6% of a worker's CPU under the load
    test, profiled).
    """
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), media_type="application/json")


def _message(error: BaseException) -> str:
    return str(error.args[0]) if error.args else type(error).__name__


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        if error.get("type") == "json_invalid":
            parts.append(f"request body is not valid JSON ({error.get('msg', 'decode error')})")
            continue
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{location or 'request body'}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _asgi_status(app, method: str, path: str, query: str = "", body: bytes = b"") -> int:
    """Sends one request straight to an ASGI app (no server, no socket); returns its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"warm-up"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    statuses = []

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def _warm_up(app: FastAPI, catalogue: _Catalogue) -> None:
    """Sends a request to every endpoint through the app, in process, before serving.

    TensorFlow, numpy and FastAPI each prepare things on first use; without this a fresh
    server's first call of each took up to ~20 ms (measured: recommend 18-22 ms,
    recommend_for_ratings 12-16 ms) instead of about 1 ms.

    Raises:
        RuntimeError: an endpoint did not answer 200.
    """
    requests = [
        ("GET", "/", "", b""),
        ("GET", "/health", "", b""),
        ("GET", "/v1/users", "limit=1", b""),
        ("GET", "/v1/movies", "query=a&limit=1", b""),
    ]
    if catalogue.users:
        path = f"/v1/users/{quote(catalogue.users[0])}/recommendations"
        requests.append(("GET", path, "k=10", b""))
    if catalogue.movie_ids:
        movie = catalogue.movie_ids[0]
        requests.append(("GET", f"/v1/movies/{quote(movie)}/similar", "k=10", b""))
        body = json.dumps({"ratings": {movie: 4.0}, "k": 10}).encode()
        requests.append(("POST", "/v1/recommendations", "", body))
    failures = []

    async def send_all():
        for method, path, query, body in requests:
            status = await _asgi_status(app, method, path, query, body)
            if status != 200:
                failures.append(f"{method} {path}: HTTP {status}")

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # On this thread, which will serve: TensorFlow's eager context is per thread, and a
        # thread's first call into it is slow too.
        asyncio.run(send_all())
    else:  # called inside a running event loop: a thread with its own loop
        thread = threading.Thread(target=asyncio.run, args=(send_all(),), name="warm-up")
        thread.start()
        thread.join()
    if failures:
        raise RuntimeError(f"warm-up requests failed: {'; '.join(failures)}")


def create_app(run_dir_or_recommender: str | Path | Recommender) -> FastAPI:
    """The FastAPI app serving one run.

    Args:
        run_dir_or_recommender: a run directory (loaded and verified here, once) or an already
            loaded :class:`~tfrs_movies.recommender.Recommender`.

    Returns:
        The app; serve it with uvicorn (see :func:`serve`) or any ASGI server.

    Raises:
        ArtifactError: the run directory is missing, corrupt or from incompatible versions.
    """
    if isinstance(run_dir_or_recommender, Recommender):
        recommender = run_dir_or_recommender
    else:
        recommender = Recommender.load(run_dir_or_recommender)
    catalogue = _Catalogue(recommender)
    manifest = recommender.manifest or {}
    run_name = Path(recommender.run_dir).name

    app = _new_app(
        title="tfrs-movies",
        version=__version__,
        summary=f"Movie recommendations from run {run_name}",
        description=(
            "Multitask two-tower recommender (TensorFlow Recommenders): ScaNN retrieval, "
            f"re-ranked with the rating model. `k` is at most {MAX_K}; request bodies at most "
            f"{MAX_BODY_BYTES} bytes; ratings on the 0.5-5 scale. Errors are "
            '`{"detail": "<message>"}`: 404 unknown user or movie, 413 body too large, '
            "422 invalid input."
        ),
    )
    app.state.recommender = recommender
    health_body = _json(
        Health(
            status="ok",
            model_loaded=True,
            run_name=run_name,
            dataset=manifest.get("dataset"),
            format_version=manifest.get("format_version"),
            created=manifest.get("created"),
            versions={str(k): str(v) for k, v in manifest.get("versions", {}).items()},
            num_users=len(catalogue.users),
            num_movies=len(catalogue.movie_ids),
            max_k=MAX_K,
            max_body_bytes=MAX_BODY_BYTES,
            tfrs_movies_version=__version__,
        ).model_dump()
    ).body
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in error.errors()
        ]
        return JSONResponse({"detail": _validation_message(errors), "errors": errors}, 422)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error serving %s", request.url.path)
        return JSONResponse({"detail": "internal server error"}, 500)

    def model_errors(function, *args, **kwargs):
        """Runs a recommender call; KeyError becomes 404 and ValueError 422."""
        try:
            return function(*args, **kwargs)
        except KeyError as error:
            raise HTTPException(404, _message(error)) from None
        except ValueError as error:
            raise HTTPException(422, _message(error)) from None

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(
            PAGE_HTML,
            headers={
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Response:
        """The model is loaded: run name, dataset, format and library versions."""
        return Response(health_body, media_type="application/json")

    @app.get("/v1/users", response_model=UserList, tags=["users"])
    async def list_users(
        offset: Annotated[int, Query(ge=0, description="first user to return")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_USERS_PAGE)] = 100,
    ) -> Response:
        """User ids of the run's training data, numeric ids in numeric order."""
        return _json(
            {
                "count": len(catalogue.users),
                "offset": offset,
                "user_ids": catalogue.users[offset : offset + limit],
            }
        )

    @app.get(
        "/v1/users/{user_id}/recommendations",
        response_model=UserRecommendations,
        responses=_ERRORS,
        tags=["recommendations"],
    )
    async def user_recommendations(
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
        if user_id not in catalogue.user_set:
            raise HTTPException(
                404,
                f"unknown user {user_id!r}: not in this run's training data; "
                "POST their ratings to /v1/recommendations instead",
            )
        records = model_errors(
            recommender.recommend,
            user_id,
            k=k,
            num_candidates=max(k, NUM_CANDIDATES),
            exclude_seen=exclude_seen,
            min_ratings=min_ratings,
        )
        return _json(
            {
                "user_id": user_id,
                "k": k,
                "exclude_seen": exclude_seen,
                "min_ratings": min_ratings,
                "recommendations": _items(records),
            }
        )

    @app.post(
        "/v1/recommendations",
        response_model=NewUserRecommendations,
        responses={**_ERRORS, 413: {"model": ErrorBody, "description": "body too large"}},
        tags=["recommendations"],
    )
    async def new_user_recommendations(request: RatingsRequest) -> Response:
        """Top-k movies for a person who is not in the training data, from their ratings
        (movie ids or exact titles as keys). The rated movies are never recommended."""
        ratings: dict[str, float] = {}
        rated = []
        for key, value in request.ratings.items():
            row = catalogue.resolve(key)
            movie_id = catalogue.movie_ids[row]
            if movie_id in ratings:
                raise HTTPException(422, f"movie {movie_id} ({key!r}) is rated more than once")
            ratings[movie_id] = value
            rated.append({"movie_id": movie_id, "title": catalogue.titles[row], "rating": value})
        records = model_errors(
            recommender.recommend_for_ratings,
            ratings,
            k=request.k,
            num_candidates=max(request.k, NUM_CANDIDATES),
            min_ratings=request.min_ratings,
        )
        return _json({"rated": rated, "k": request.k, "recommendations": _items(records)})

    @app.get(
        "/v1/movies/{movie_id}/similar",
        response_model=SimilarMovies,
        responses=_ERRORS,
        tags=["movies"],
    )
    async def similar_movies(
        movie_id: Annotated[
            str, PathParam(max_length=MAX_ID_CHARS, description="movie id (or exact title)")
        ],
        k: KQuery = 10,
    ) -> Response:
        """The k movies whose embeddings are closest (cosine) to this movie's."""
        row = catalogue.resolve(movie_id)
        records = model_errors(recommender.similar_movies, catalogue.movie_ids[row], k=k)
        return _json({"movie": catalogue.movie(row), "k": k, "similar": _items(records)})

    @app.get("/v1/movies", response_model=MovieSearch, responses=_ERRORS, tags=["movies"])
    async def search_movies(
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
        count, rows = catalogue.search(query, limit)
        return _json({"query": query, "count": count, "movies": [catalogue.movie(r) for r in rows]})

    _warm_up(app, catalogue)
    return app


def check_port(host: str, port: int) -> None:
    """Fails early, with a clear message, when ``host:port`` cannot be listened on.

    Raises:
        OSError: the address is in use or not available.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


# Each worker computes on one thread: parallelism comes from worker processes, and thread
# pools in every process of a small machine only fight over its cores (measured with two
# workers on 2 cores: load-test p99 576 ms with the default pools, 83 ms with one thread
# each). Set before the workers import numpy and
# TensorFlow; values already in the environment are kept.
WORKER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
}


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = True,
    workers: int = 1,
    startup_seconds: float = 600.0,
) -> None:
    """Serves a run over HTTP with uvicorn until interrupted (Ctrl-C or SIGTERM).

    The run is verified here, once; then ``workers`` processes each load it and listen on
    ``host:port``. The address is printed when every worker is ready. If a worker dies, the
    others are stopped and the error is raised: a server at reduced capacity does not go on
    silently.

    Args:
        run_dir: the run directory.
        host: interface to listen on; loopback by default (the API has no authentication).
        port: TCP port.
        log_level: uvicorn's log level.
        access_log: log one line per request.
        workers: server processes, each with its own copy of the model (about 0.7 GB); one
            per core uses the whole machine.
        startup_seconds: how long the workers may take to load the run.

    Raises:
        TfrsMoviesError: the address cannot be listened on, a worker failed to start or died.
        ArtifactError: the run is missing, corrupt or from incompatible versions.
        ValueError: workers < 1.
    """
    import multiprocessing
    import multiprocessing.connection

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise TfrsMoviesError("--workers above 1 needs SO_REUSEPORT (Linux, macOS, BSD)")
    try:
        check_port(host, port)
    except OSError as error:
        raise TfrsMoviesError(
            f"cannot listen on {host}:{port}: {error.strerror or error}"
        ) from None
    if host not in LOOPBACK_HOSTS:
        logger.warning("listening on %s: the API has no authentication", host)
    if not Path(run_dir).is_dir():
        raise ArtifactError(f"run directory {run_dir} does not exist")
    verify_run(Path(run_dir))
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked TF state
    reports = context.SimpleQueue()
    options = (str(Path(run_dir).resolve()), host, port, log_level, access_log, workers > 1)
    processes = [
        context.Process(target=_worker, args=(*options, reports), name=f"tfrs-movies-worker-{i}")
        for i in range(workers)
    ]
    try:
        with _stop_on_sigterm():
            with _environment_defaults(WORKER_ENVIRONMENT):
                for process in processes:
                    process.start()
            _wait_until_ready(processes, reports, startup_seconds)
            shown = f"[{host}]" if ":" in host else host
            print(
                f"serving {Path(run_dir)} at http://{shown}:{port}/ "
                f"({workers} worker process{'es' if workers > 1 else ''}; API docs at /docs)",
                flush=True,
            )
            multiprocessing.connection.wait([process.sentinel for process in processes])
            dead = next(process for process in processes if not process.is_alive())
            raise TfrsMoviesError(
                f"server worker {dead.pid} exited with status {dead.exitcode}; stopped the server"
            )
    except KeyboardInterrupt:
        pass
    finally:
        started = [process for process in processes if process.pid is not None]
        for process in started:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in started:
            process.join(timeout=15)
            if process.is_alive():
                process.kill()
                process.join()


def _wait_until_ready(processes, reports, seconds: float) -> None:
    """Waits for every worker's report that it listens.

    Raises:
        ArtifactError, TfrsMoviesError: a worker's failure (its message), a worker that exited
            without a word, or no report within ``seconds``.
    """
    import multiprocessing.connection

    deadline = time.monotonic() + seconds
    waiting = len(processes)
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TfrsMoviesError(f"the server workers did not start within {seconds:.0f} s")
        sentinels = [process.sentinel for process in processes]
        multiprocessing.connection.wait(sentinels, timeout=min(remaining, 0.2))
        while not reports.empty():
            status, detail = reports.get()
            if status == "ready":
                waiting -= 1
            elif status == "artifact":
                raise ArtifactError(detail)
            else:
                raise TfrsMoviesError(f"a server worker failed to start: {detail}")
        if waiting and any(not process.is_alive() for process in processes) and reports.empty():
            dead = next(process for process in processes if not process.is_alive())
            raise TfrsMoviesError(
                f"server worker {dead.pid} exited with status {dead.exitcode} while starting"
            )


def _worker(run_dir, host, port, log_level, access_log, reuse_port, reports) -> None:
    """One server process: loads the run, listens, serves until told to stop."""
    try:
        import uvicorn

        app = create_app(Recommender.load(run_dir, verify=False))
        # TensorFlow and the model leave ~380k Python objects that live as long as the process;
        # a full garbage collection scans them all (176 ms, measured) and would stall every
        # request in flight. Frozen, they are skipped: collections take microseconds.
        gc.collect()
        gc.freeze()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Bound only now that the model is loaded: the kernel never hands a connection to a
        # worker that cannot answer it yet.
        listener.bind((host, port))
        listener.listen(2048)
    except ArtifactError as error:
        reports.put(("artifact", str(error)))
        raise SystemExit(1) from None
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
        reports.put(("error", f"{type(error).__name__}: {error}"))
        raise SystemExit(1) from None

    class ReportingServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            # Ready means accepting: until now connections would wait in the backlog.
            if not self.should_exit:
                reports.put(("ready", os.getpid()))

    config = uvicorn.Config(
        app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=10
    )
    server = ReportingServer(config)
    parent = os.getppid()

    def stop_when_orphaned() -> None:
        # A parent killed outright (SIGKILL) cannot stop its workers; they stop themselves.
        while not server.should_exit:
            if os.getppid() != parent:
                server.should_exit = True
            time.sleep(1.0)

    threading.Thread(target=stop_when_orphaned, daemon=True).start()
    server.run(sockets=[listener])


@contextlib.contextmanager
def _environment_defaults(defaults: dict[str, str]):
    """Sets environment variables not already set, for the block (child processes inherit)."""
    added = [name for name in defaults if name not in os.environ]
    os.environ.update({name: defaults[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM raises KeyboardInterrupt in the block (main thread only), so that the workers
    are stopped too instead of being left running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tfrs-movies</title>
<style>
  :root { --fg: #1d2330; --muted: #5f6b7a; --line: #dde2ea; --accent: #2f5fd0; --bg: #f5f7fa; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
         color: var(--fg); background: var(--bg); }
  header { padding: 14px 24px; background: #1d2330; color: #fff; display: flex;
           align-items: baseline; gap: 16px; flex-wrap: wrap; }
  header h1 { margin: 0; font-size: 20px; }
  header span { color: #b9c3d3; }
  header a { color: #b9d0ff; margin-left: auto; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr));
         gap: 16px; padding: 16px 24px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
            padding: 14px 16px; }
  h2 { margin: 0 0 10px; font-size: 16px; }
  .row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 10px; }
  input[type=text], input:not([type]), select { padding: 5px 8px; border: 1px solid #c3cad5;
         border-radius: 5px; font: inherit; }
  input#search-query { flex: 1; min-width: 180px; }
  button { padding: 5px 12px; border: 1px solid var(--accent); border-radius: 5px;
           background: var(--accent); color: #fff; font: inherit; cursor: pointer; }
  button.small { padding: 1px 8px; background: #fff; color: var(--accent); }
  button:disabled { opacity: .5; cursor: default; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line);
           vertical-align: top; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.actions { white-space: nowrap; }
  td .genres { color: var(--muted); font-size: 12px; }
  a.title { color: var(--fg); text-decoration: none; border-bottom: 1px dotted var(--muted);
            cursor: pointer; }
  .muted { color: var(--muted); }
  #message { margin: 12px 24px 0; padding: 8px 12px; border-radius: 6px; display: none;
             background: #fdecec; color: #8a1c1c; border: 1px solid #f3c2c2; }
  ul#my-ratings { list-style: none; padding: 0; margin: 0 0 10px; }
  ul#my-ratings li { display: flex; gap: 8px; align-items: center; padding: 3px 0;
                     border-bottom: 1px solid var(--line); }
  ul#my-ratings li .stars { margin-left: auto; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<header>
  <h1>tfrs-movies</h1>
  <span id="run-info">loading model&hellip;</span>
  <a href="/docs">API docs</a>
</header>
<div id="message" role="alert"></div>
<main>
  <section id="user-section">
    <h2>Recommendations for a user</h2>
    <div class="row">
      <label for="user-id">User id</label>
      <input id="user-id" list="user-list" size="10" autocomplete="off" placeholder="e.g. 1">
      <datalist id="user-list"></datalist>
      <label for="user-k">k</label>
      <select id="user-k"><option>5</option><option selected>10</option><option>20</option>
        <option>50</option></select>
      <label><input type="checkbox" id="user-exclude" checked> hide movies they rated</label>
      <button id="user-go">Recommend</button>
    </div>
    <div id="user-results" class="muted">Pick or type a user id.</div>
  </section>

  <section id="search-section">
    <h2>Find movies</h2>
    <form class="row" id="search-form">
      <input id="search-query" placeholder="title contains&hellip; e.g. star wars">
      <button id="search-go" type="submit">Search</button>
    </form>
    <div id="search-results" class="muted">Search by title, then rate movies or show
      similar ones.</div>
  </section>

  <section id="new-section">
    <h2>Recommendations for you (a new viewer)</h2>
    <ul id="my-ratings"></ul>
    <div class="row">
      <button id="new-go" disabled>Recommend for me</button>
      <button id="new-clear" class="small">Clear ratings</button>
      <span id="new-hint" class="muted">Rate a few movies found by the search.</span>
    </div>
    <div id="new-results"></div>
  </section>

  <section id="similar-section">
    <h2>Similar movies</h2>
    <div id="similar-results" class="muted">Click a title, or &ldquo;Similar&rdquo; in the
      search results.</div>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const myRatings = new Map();  // movie id -> {title, rating}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showError(text) {
  const box = $("message");
  box.textContent = text;
  box.style.display = text ? "block" : "none";
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function titleLink(movie) {
  const link = el("a", {className: "title", href: "#", title: "show similar movies"}, movie.title);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    showSimilar(movie.movie_id);
  });
  return el("td", {}, link, el("div", {className: "genres"}, movie.genres.replaceAll("|", ", ")));
}

function recommendationTable(items, withRating) {
  if (!items.length) return el("p", {className: "muted"}, "Nothing left to recommend.");
  const head = el("tr", {}, el("th", {className: "num"}, "#"), el("th", {}, "title"),
    withRating ? el("th", {className: "num"}, "predicted") : "",
    el("th", {className: "num"}, withRating ? "score" : "similarity"),
    el("th", {className: "num"}, "ratings"));
  const rows = items.map((item) => el("tr", {},
    el("td", {className: "num"}, item.rank), titleLink(item),
    withRating ? el("td", {className: "num"}, item.predicted_rating.toFixed(2) + " \\u2605") : "",
    el("td", {className: "num"}, item.retrieval_score.toFixed(3)),
    el("td", {className: "num"}, item.num_ratings)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function busy(button, on) { button.disabled = on; }

async function recommendUser() {
  const user = $("user-id").value.trim();
  if (!user) { showError("Type or pick a user id."); return; }
  const params = new URLSearchParams({k: $("user-k").value,
    exclude_seen: $("user-exclude").checked});
  busy($("user-go"), true);
  try {
    const body = await api(`/v1/users/${encodeURIComponent(user)}/recommendations?${params}`);
    showError("");
    $("user-results").className = "";
    $("user-results").replaceChildren(el("p", {className: "muted"},
      `Top ${body.recommendations.length} for user ${body.user_id}:`),
      recommendationTable(body.recommendations, true));
  } catch (error) { showError(error.message); }
  finally { busy($("user-go"), false); }
}

function ratingSelect(initial) {
  const select = el("select", {});
  for (let value = 5; value >= 0.5; value -= 0.5) {
    const option = el("option", {value: String(value)}, value.toFixed(1));
    option.selected = value === initial;
    select.append(option);
  }
  return select;
}

async function searchMovies(event) {
  if (event) event.preventDefault();
  const query = $("search-query").value;
  try {
    const body = await api(`/v1/movies?${new URLSearchParams({query, limit: 20})}`);
    showError("");
    const box = $("search-results");
    box.className = "";
    if (!body.movies.length) {
      box.replaceChildren(
        el("p", {className: "muted"}, `No title contains \\u201c${query}\\u201d.`));
      return;
    }
    const rows = body.movies.map((movie) => {
      const select = ratingSelect(4);
      const rate = el("button", {className: "small rate"}, "Rate");
      rate.addEventListener("click", () => addRating(movie, Number(select.value)));
      const similar = el("button", {className: "small similar"}, "Similar");
      similar.addEventListener("click", () => showSimilar(movie.movie_id));
      return el("tr", {}, titleLink(movie), el("td", {className: "num"}, movie.num_ratings),
        el("td", {className: "actions"}, select, " ", rate, " ", similar));
    });
    box.replaceChildren(el("p", {className: "muted"},
        `${body.count} match${body.count === 1 ? "" : "es"}` +
        (body.count > body.movies.length ? `, showing the ${body.movies.length} most rated` : "")),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "title"),
        el("th", {className: "num"}, "ratings"), el("th", {}, "your rating"))),
      el("tbody", {}, ...rows)));
  } catch (error) { showError(error.message); }
}

function renderRatings() {
  const list = $("my-ratings");
  list.replaceChildren(...[...myRatings.entries()].map(([id, entry]) => {
    const remove = el("button", {className: "small", title: "remove"}, "\\u2715");
    remove.addEventListener("click", () => { myRatings.delete(id); renderRatings(); });
    return el("li", {}, el("span", {}, entry.title),
      el("span", {className: "stars"}, entry.rating.toFixed(1) + " \\u2605"), remove);
  }));
  $("new-go").disabled = myRatings.size === 0;
  $("new-hint").textContent = myRatings.size ? `${myRatings.size} rated` :
    "Rate a few movies found by the search.";
}

function addRating(movie, rating) {
  myRatings.set(movie.movie_id, {title: movie.title, rating});
  renderRatings();
}

async function recommendNew() {
  const ratings = {};
  for (const [id, entry] of myRatings) ratings[id] = entry.rating;
  busy($("new-go"), true);
  try {
    const body = await api("/v1/recommendations", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({ratings, k: 10})});
    showError("");
    $("new-results").replaceChildren(el("p", {className: "muted"},
      `From your ${body.rated.length} rating${body.rated.length === 1 ? "" : "s"}:`),
      recommendationTable(body.recommendations, true));
  } catch (error) { showError(error.message); }
  finally { busy($("new-go"), myRatings.size === 0); }
}

async function showSimilar(movieId) {
  try {
    const body = await api(`/v1/movies/${encodeURIComponent(movieId)}/similar?k=10`);
    showError("");
    $("similar-results").className = "";
    $("similar-results").replaceChildren(
      el("p", {}, "Most similar to ", el("strong", {}, body.movie.title), ":"),
      recommendationTable(body.similar, false));
    $("similar-section").scrollIntoView({behavior: "smooth", block: "nearest"});
  } catch (error) { showError(error.message); }
}

async function start() {
  $("user-go").addEventListener("click", recommendUser);
  $("user-id").addEventListener("keydown", (e) => { if (e.key === "Enter") recommendUser(); });
  $("search-form").addEventListener("submit", searchMovies);
  $("new-go").addEventListener("click", recommendNew);
  $("new-clear").addEventListener("click", () => { myRatings.clear(); renderRatings(); });
  try {
    const health = await api("/health");
    $("run-info").textContent = `run ${health.run_name}` +
      (health.dataset ? ` \\u00b7 ${health.dataset}` : "") +
      ` \\u00b7 ${health.num_users} users \\u00b7 ${health.num_movies} movies`;
    const users = await api("/v1/users?limit=1000");
    $("user-list").replaceChildren(...users.user_ids.map((id) => el("option", {value: id})));
    if (users.user_ids.length) $("user-id").placeholder = `e.g. ${users.user_ids[0]}`;
    document.body.dataset.ready = "true";
  } catch (error) { showError(`The server is not answering: ${error.message}`); }
}
start();
</script>
</body>
</html>
"""
