"""What stands between a request and the routes: the body size limit and the error answers.

Every error answer is ``{"detail": "<message>"}`` (validation errors also list ``errors``), and
bad input never gets a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tfrs_movies.serving.schemas import MAX_BODY_BYTES

logger = logging.getLogger(__name__)

MAX_LISTED_ERRORS = 5
"""Validation errors spelled out in ``detail``; the rest are counted."""


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


def add_error_handlers(app: FastAPI) -> None:
    """Makes validation errors 422 with a one-line ``detail``, and anything unexpected a
    logged 500 with a generic ``detail`` (no traceback reaches the client).

    Args:
        app: the app to install the handlers on.
    """

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in error.errors()
        ]
        return JSONResponse({"detail": validation_message(errors), "errors": errors}, 422)

    @app.exception_handler(Exception)
    def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error serving %s", request.url.path)
        return JSONResponse({"detail": "internal server error"}, 500)


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line for a person out of pydantic's validation errors.

    Args:
        errors: pydantic error dicts (``loc``, ``msg``, ``type``).

    Returns:
        ``"<field>: <message>; ..."``, the first :data:`MAX_LISTED_ERRORS` spelled out.
    """
    parts = []
    for error in errors[:MAX_LISTED_ERRORS]:
        if error.get("type") == "json_invalid":
            parts.append(f"request body is not valid JSON ({error.get('msg', 'decode error')})")
            continue
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{location or 'request body'}: {error.get('msg', 'invalid')}")
    hidden = len(errors) - MAX_LISTED_ERRORS
    more = f" (and {hidden} more)" if hidden > 0 else ""
    return "; ".join(parts) + more
