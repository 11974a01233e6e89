"""The FastAPI app over one run: built once, warmed up, then served by any ASGI server."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI

from tfrs_movies import __version__
from tfrs_movies.recommend import Recommender
from tfrs_movies.serving.listing import Listing
from tfrs_movies.serving.middleware import BodySizeLimit, add_error_handlers
from tfrs_movies.serving.routes import Endpoints
from tfrs_movies.serving.schemas import MAX_BODY_BYTES, MAX_K, MAX_RATING, MIN_RATING, Health

try:  # Swagger UI and ReDoc served from the package, so /docs works offline.
    from fastapi_offline import FastAPIOffline as _new_app
except ImportError:  # pragma: no cover - falls back to FastAPI's CDN-hosted docs
    _new_app = FastAPI


def create_app(run_dir_or_recommender: str | Path | Recommender) -> FastAPI:
    """The FastAPI app serving one run.

    Args:
        run_dir_or_recommender: a run directory (loaded and verified here, once) or an already
            loaded :class:`~tfrs_movies.recommend.Recommender`.

    Returns:
        The app, warmed up; serve it with uvicorn (see
        :func:`~tfrs_movies.serving.server.serve`) or any ASGI server.

    Raises:
        ArtifactError: the run directory is missing, corrupt or from incompatible versions.
        RuntimeError: an endpoint failed its warm-up request.
    """
    if isinstance(run_dir_or_recommender, Recommender):
        recommender = run_dir_or_recommender
    else:
        recommender = Recommender.load(run_dir_or_recommender)
    listing = Listing(recommender)
    run_name = Path(recommender.run_dir).name
    app = _new_app(
        title="tfrs-movies",
        version=__version__,
        summary=f"Movie recommendations from run {run_name}",
        description=(
            "Multitask two-tower recommender (TensorFlow Recommenders): ScaNN retrieval, "
            f"re-ranked with the rating model. `k` is at most {MAX_K}; request bodies at most "
            f"{MAX_BODY_BYTES} bytes; ratings on the {MIN_RATING}-{MAX_RATING:g} scale. Errors "
            'are `{"detail": "<message>"}`: 404 unknown user or movie, 413 body too large, '
            "422 invalid input."
        ),
    )
    app.state.recommender = recommender
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    add_error_handlers(app)
    endpoints = Endpoints(recommender, listing, _health(recommender, listing))
    app.state.new_people = endpoints.new_people  # its batch_sizes, for tests and benchmarks
    app.include_router(endpoints.router())
    _warm_up(app, listing)
    return app


def _health(recommender: Recommender, listing: Listing) -> Health:
    """The ``/health`` answer of a run."""
    manifest = recommender.manifest or {}
    return Health(
        status="ok",
        model_loaded=True,
        run_name=Path(recommender.run_dir).name,
        dataset=manifest.get("dataset"),
        format_version=manifest.get("format_version"),
        created=manifest.get("created"),
        versions={str(k): str(v) for k, v in manifest.get("versions", {}).items()},
        num_users=len(listing.users),
        num_movies=listing.num_movies,
        max_k=MAX_K,
        max_body_bytes=MAX_BODY_BYTES,
        tfrs_movies_version=__version__,
    )


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


def _warm_up(app: FastAPI, listing: Listing) -> None:
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
    if listing.users:
        path = f"/v1/users/{quote(listing.users[0])}/recommendations"
        requests.append(("GET", path, "k=10", b""))
    if listing.num_movies:
        movie = listing.movie(0)["movie_id"]
        requests.append(("GET", "/v1/movies/similar", f"movie={quote(movie)}&k=10", b""))
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
