"""Serving a run over HTTP: a JSON API and a small web page over a
:class:`~tfrs_movies.recommend.Recommender`.

Start it with ``tfrs-movies serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--workers N]``, or
from code::

    from tfrs_movies.serving import create_app
    app = create_app("runs/ml100k")  # any ASGI server can run it

The run is loaded once, when the app is created. Endpoints (JSON; OpenAPI docs at ``/docs``):

    GET  /                                     the web page (plain HTML + JS, no external assets)
    GET  /health                               model loaded, run name, library versions
    GET  /v1/users?offset=0&limit=100          user ids of the run (for pickers)
    GET  /v1/users/{user_id}/recommendations   ?k=10&exclude_seen=true&min_ratings=0
    POST /v1/recommendations                   {"ratings": {"<movie id or title>": 4.5}, "k": 10}
    GET  /v1/movies/similar?movie=...&k=10     movie id or any exact title (also with "/")
    GET  /v1/movies/{movie_id}/similar         ?k=10 (ids, and titles without "/")
    GET  /v1/movies?query=star+wars&limit=20   case-insensitive title search, most rated first

Errors never come back as 500 for bad input: every error body is ``{"detail": "<message>"}``
(validation errors also list ``errors``). Invalid parameters or bodies, ratings that are not
JSON numbers within 0.5-5, k above :data:`~tfrs_movies.serving.schemas.MAX_K`, a movie rated
twice and ambiguous titles give 422; unknown users and movies 404; bodies over
:data:`~tfrs_movies.serving.schemas.MAX_BODY_BYTES` 413.

Modules: ``schemas`` (limits, request and response models), ``middleware`` (body size limit,
error answers), ``listing`` (title search, user order), ``routes`` (the endpoints), ``app``
(:func:`create_app`), ``server`` (:func:`serve`: worker processes and their supervisor), and
``static/index.html`` (the page).
"""

from tfrs_movies.serving.app import create_app
from tfrs_movies.serving.server import serve

__all__ = ["create_app", "serve"]
