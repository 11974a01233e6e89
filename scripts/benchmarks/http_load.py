"""The load test's client side: request plans, keep-alive connections, the summary.

One asyncio thread drives every client (a request costs ~0.09 ms of client CPU), so the load
generator takes little of the machine it shares with the server. ``load_test.py`` is the
command that starts the server (or takes its URL) and calls :func:`load_test`.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import subprocess
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from common import latency_summary

try:  # uvloop (installed with the server) makes the load generator cheaper still
    from uvloop import run as _run_event_loop
except ImportError:
    _run_event_loop = asyncio.run

KINDS = ("user", "new_user", "similar", "search", "health")
# A request that gets no complete answer: refused or reset, timed out, cut short, or garbled.
FAILURES = (OSError, EOFError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError)


@dataclass
class Result:
    """What the clients saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)
    not_sent: int = 0


def get_json(host: str, port: int, path: str, timeout: float = 10.0):
    """GET ``path`` and decode JSON; raises on a non-200 answer."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        connection.close()


def wait_for_health(host: str, port: int, process: subprocess.Popen | None, seconds: float):
    """Polls /health until it answers 200; returns its JSON."""
    deadline = time.monotonic() + seconds
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            return get_json(host, port, "/health", timeout=2.0)
        except (OSError, RuntimeError, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from /health within {seconds:.0f} s") from None
            time.sleep(0.25)


def plan_requests(client: int, count: int, users, movies, queries, seed: int):
    """The (kind, method, path, body) requests of one client, seeded."""
    rng = random.Random(seed * 1_000_003 + client)
    requests = []
    for i in range(count):
        kind = KINDS[(client + i) % len(KINDS)]
        if kind == "user":
            path = f"/v1/users/{urllib.parse.quote(rng.choice(users))}/recommendations?k=10"
            requests.append((kind, "GET", path, None))
        elif kind == "new_user":
            picked = rng.sample(movies, min(len(movies), rng.randint(2, 5)))
            ratings = {m: rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]) for m in picked}
            body = json.dumps({"ratings": ratings, "k": 10}).encode()
            requests.append((kind, "POST", "/v1/recommendations", body))
        elif kind == "similar":
            path = f"/v1/movies/{urllib.parse.quote(rng.choice(movies))}/similar?k=10"
            requests.append((kind, "GET", path, None))
        elif kind == "search":
            query = urllib.parse.urlencode({"query": rng.choice(queries), "limit": 20})
            requests.append((kind, "GET", f"/v1/movies?{query}", None))
        else:
            requests.append((kind, "GET", "/health", None))
    return requests


class Connection:
    """One keep-alive HTTP/1.1 connection, spoken directly over asyncio streams.

    A load generator must cost much less than the server it measures: a request here is one
    write and two reads, under 0.1 ms of client CPU (~90 us measured with uvloop).
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connects (again, after a failure)."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes | None) -> int:
        """Sends one request and reads the whole answer; returns the HTTP status."""
        if self.writer is None:
            await self.open()
        body = body or b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode("latin-1") + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = answer.decode("latin-1").split("\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:  # every answer of the API has a length; anything else is an error
            raise ConnectionError(f"answer without Content-Length: {status_line}")
        await self.reader.readexactly(length)
        return int(status_line.split(" ", 2)[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def run_client(
    connection, requests, timeout, deadline, result: Result, keep_open: bool = False
) -> None:
    """Sends the requests one after another over a keep-alive connection (closed at the end
    unless ``keep_open``)."""
    try:
        for done, (kind, method, path, body) in enumerate(requests):
            if time.monotonic() > deadline:
                result.not_sent += len(requests) - done
                return
            began = time.perf_counter()
            try:
                status = await asyncio.wait_for(connection.request(method, path, body), timeout)
            except FAILURES as error:
                status = type(error).__name__
                connection.close()  # a new connection for the next request
            result.latencies[kind].append(time.perf_counter() - began)
            if status != 200:
                result.errors[f"{kind}: {status}"] += 1
    finally:
        if not keep_open:
            connection.close()


async def run_clients(host, port, plans, timeout, deadline, result: Result) -> float:
    """Runs every client's plan at once; returns the wall time from the common start.

    The connections are opened before the clock starts, as a load generator such as wrk does:
    what is measured is the latency of requests on established keep-alive connections. (A
    connection that fails to open is opened by its first request, and that time counts.)
    """
    connections = [Connection(host, port) for _ in plans]

    async def connect(connection):
        try:
            await asyncio.wait_for(connection.open(), timeout)
        except FAILURES:
            connection.close()

    await asyncio.gather(*(connect(connection) for connection in connections))
    # Warm-up, not measured: every connection sends its first planned request once, all at
    # once. A fresh server's first burst is slower (measured: one request of up to ~350 ms);
    # this test measures the steady state.
    warm_up = Result()
    await asyncio.gather(
        *(
            run_client(connection, plan[:1], timeout, deadline, warm_up, keep_open=True)
            for connection, plan in zip(connections, plans, strict=True)
        )
    )
    began = time.perf_counter()
    await asyncio.gather(
        *(
            run_client(connection, plan, timeout, deadline, result)
            for connection, plan in zip(connections, plans, strict=True)
        )
    )
    return time.perf_counter() - began


def summarize(values: list[float]) -> dict[str, float]:
    """Count and latency percentiles (``numpy.percentile``, linear) in ms; NaN when empty."""
    if not values:
        nan = float("nan")
        return {
            "count": 0,
            "p50_ms": nan,
            "p90_ms": nan,
            "p99_ms": nan,
            "max_ms": nan,
            "mean_ms": nan,
        }
    return {"count": len(values), **latency_summary(values)}


def load_test(host: str, port: int, args: argparse.Namespace) -> dict:
    """Runs the clients against a running server; returns the summary."""
    health = wait_for_health(host, port, None, 10)
    users = get_json(host, port, "/v1/users?limit=1000")["user_ids"]
    movies_page = get_json(host, port, "/v1/movies?limit=100")["movies"]
    movies = [m["movie_id"] for m in movies_page]
    words = {w.strip("(),.:").lower() for m in movies_page for w in m["title"].split()}
    queries = sorted(w for w in words if len(w) >= 3 and not w.isdigit()) or ["a"]
    plans = [
        plan_requests(c, args.requests, users, movies, queries, args.seed)
        for c in range(args.clients)
    ]
    result = Result()
    deadline = time.monotonic() + args.max_seconds
    wall = _run_event_loop(run_clients(host, port, plans, args.timeout, deadline, result))
    everything = [v for values in result.latencies.values() for v in values]
    sent = len(everything)
    errors = sum(result.errors.values())
    not_sent = args.clients * args.requests - sent
    return {
        "url": f"http://{host}:{port}",
        "run_name": health.get("run_name"),
        "clients": args.clients,
        "requests_per_client": args.requests,
        "sent": sent,
        "not_sent": not_sent,
        "errors": errors,
        "error_kinds": dict(result.errors),
        "wall_seconds": wall,
        "throughput_rps": sent / wall if wall > 0 else float("nan"),
        "overall": summarize(everything),
        "per_endpoint": {kind: summarize(result.latencies[kind]) for kind in KINDS},
        "target_p99_ms": args.target_p99_ms,
    }


def print_summary(summary: dict) -> None:
    overall = summary["overall"]
    print(
        f"load test: {summary['clients']} clients x {summary['requests_per_client']} requests "
        f"against {summary['url']} (run {summary['run_name']})"
    )
    print(
        f"  sent {summary['sent']}  errors {summary['errors']}  not sent {summary['not_sent']}  "
        f"wall {summary['wall_seconds']:.1f} s  throughput {summary['throughput_rps']:.0f} req/s"
    )
    print(
        f"  latency ms: p50 {overall['p50_ms']:.1f}  p90 {overall['p90_ms']:.1f}  "
        f"p99 {overall['p99_ms']:.1f}  max {overall['max_ms']:.1f}"
    )
    for kind, stats in summary["per_endpoint"].items():
        print(
            f"    {kind:<9} n={stats['count']:<5} p50 {stats['p50_ms']:7.1f}  "
            f"p99 {stats['p99_ms']:7.1f}  max {stats['max_ms']:7.1f}"
        )
    for kind, count in sorted(summary["error_kinds"].items()):
        print(f"  error {kind}: {count}")
    met = overall["p99_ms"] <= summary["target_p99_ms"]
    print(f"  target p99 <= {summary['target_p99_ms']:g} ms: {'met' if met else 'MISSED'}")
