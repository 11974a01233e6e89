"""Serving a run over HTTP: ``serve`` starts worker processes and supervises them.

Throughput comes from processes: ``workers`` server processes, each with the model loaded,
single-threaded numpy and TensorFlow, and its own listening socket on the same port
(``SO_REUSEPORT``), among which the kernel spreads connections. The parent verifies the run
once, waits until every worker listens, and stops them all if one dies or it is told to stop.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from pathlib import Path

import uvicorn

from tfrs_movies.errors import ArtifactError, TfrsMoviesError
from tfrs_movies.recommend import Recommender
from tfrs_movies.rundir import verify_run
from tfrs_movies.serving.app import create_app

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Hosts that need no warning: the API has no authentication."""


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
