"""``tfrs-movies serve``: the REST API and web page of one run."""

from __future__ import annotations

import argparse

from tfrs_movies.errors import TfrsMoviesError


def cmd_serve(args: argparse.Namespace) -> int:
    """Serves RUN_DIR over HTTP until interrupted."""
    # Deferred: FastAPI is an optional dependency and the app loads TensorFlow.
    try:
        from tfrs_movies.serving import serve
    except ImportError as error:
        raise TfrsMoviesError(
            f"serve needs FastAPI and uvicorn ({error}); pip install fastapi uvicorn"
        ) from None
    serve(
        args.run_dir,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        workers=args.workers,
    )
    return 0


def port_number(text: str) -> int:
    """argparse type of a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port must be within 1-65535, got {port}")
    return port


def worker_count(text: str) -> int:
    """argparse type of the number of server processes, 1-64."""
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}") from None
    if not 0 < workers <= 64:
        raise argparse.ArgumentTypeError(f"workers must be within 1-64, got {workers}")
    return workers


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds ``serve``."""
    serve = commands.add_parser(
        "serve",
        help="serve a run over HTTP (REST API and a web page)",
        description="Verify RUN_DIR once, load it in each worker process and serve "
        "recommendations over HTTP: a JSON API (OpenAPI docs at /docs) and a small web page at /.",
    )
    serve.add_argument("run_dir", metavar="RUN_DIR")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: loopback; no authentication)",
    )
    serve.add_argument("--port", type=port_number, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (default info)",
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        help="server processes, each loading the model (default 1; one per core uses them all)",
    )
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="do not log one line per request",
    )
    serve.set_defaults(handler=cmd_serve)
