"""Load test of ``tfrs-movies serve`` on loopback: concurrent clients over every endpoint.

    python scripts/benchmarks/load_test.py RUN_DIR     # starts the server on a free loopback port
    python scripts/benchmarks/load_test.py http://127.0.0.1:8000

Given a run directory, the server is started with ``--workers`` processes (default: one per
core) and the test begins once it prints that every worker is ready. Each of ``--clients``
concurrent clients (default 50; asyncio tasks in one thread, so that the load generator costs
little of the machine it shares with the server) sends ``--requests`` requests (default 40),
one after another, over one keep-alive connection. The connections are opened, and each sends
one warm-up request, before the clock starts: what is measured is the steady state. Requests
cycle through user recommendations, new-user recommendations (POST), similar movies, title
search and health, with seeded random users, movies and queries. The whole test stops after
``--max-seconds``; every request has a ``--timeout``. Prints p50, p90, p99 and max latency
overall and per endpoint, throughput, and errors (any non-200 answer or failed request). Exit
status 0 when every request was sent and answered 200, 1 otherwise, 2 on bad arguments or a
server that does not start. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from http_load import load_test, print_summary

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(log_path: str, process: subprocess.Popen, seconds: float) -> None:
    """Waits for the server's "serving ... at" line: it prints it once every worker listens."""
    deadline = time.monotonic() + seconds
    while True:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            if any(line.startswith("serving ") for line in log):
                return
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not ready within {seconds:.0f} s")
        time.sleep(0.25)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", metavar="RUN_DIR_OR_URL", help="run directory or loopback URL")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--requests", type=int, default=40, help="requests per client (default 40)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="whole test, seconds")
    parser.add_argument("--startup-seconds", type=float, default=180.0, help="server start limit")
    parser.add_argument("--seed", type=int, default=0, help="random users/movies/queries")
    parser.add_argument("--target-p99-ms", type=float, default=50.0, help="p99 goal (default 50)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="server processes when starting the server (default: one per core)",
    )
    parser.add_argument("--access-log", action="store_true", help="server logs every request")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    for name, most in (("clients", 500), ("requests", 10_000), ("workers", 64)):
        value = getattr(args, name)
        if not 1 <= value <= most:
            parser.error(f"--{name} must be within 1-{most}, got {value}")
    if not 0 < args.max_seconds <= 3600 or not 0 < args.timeout <= 300:
        parser.error("--max-seconds must be within 0-3600 and --timeout within 0-300")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    process = None
    log = None
    started = False  # the server answered; its log is deleted at the end
    if "://" in args.target:
        url = urllib.parse.urlsplit(args.target)
        if url.scheme != "http" or url.hostname not in LOOPBACK:
            print(
                f"error: only http:// loopback URLs are allowed, got {args.target}", file=sys.stderr
            )
            return 2
        host, port = url.hostname, url.port or 80
    else:
        run_dir = Path(args.target)
        if not run_dir.is_dir():
            print(f"error: {run_dir} is neither a run directory nor a URL", file=sys.stderr)
            return 2
        host, port = "127.0.0.1", free_port()
        command = [sys.executable, "-m", "tfrs_movies.cli", "serve", str(run_dir)]
        command += ["--host", host, "--port", str(port), "--workers", str(args.workers)]
        command += ["--log-level", "warning"]
        if not args.access_log:
            command.append("--no-access-log")
        log = tempfile.NamedTemporaryFile("w+", prefix="tfrs-serve-", suffix=".log", delete=False)
        print(f"starting the server on {host}:{port} (log {log.name})", file=sys.stderr)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    try:
        if process is not None:
            try:
                wait_until_serving(log.name, process, args.startup_seconds)
                started = True
            except RuntimeError as error:
                log.seek(0)
                tail = log.read()[-2000:]
                print(f"error: the server did not start: {error}\n{tail}", file=sys.stderr)
                return 2
        summary = load_test(host, port, args)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log is not None:
            log.close()
            if started:
                os.unlink(log.name)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return 0 if summary["errors"] == 0 and summary["not_sent"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
