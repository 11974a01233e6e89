"""What every benchmark script shares: timing, latency percentiles, memory, tables, targets.

The benchmark scripts import their helpers from this folder by plain module name (Python puts a
script's folder first on ``sys.path``; pytest gets it from ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import cProfile
import dataclasses
import io
import os
import pstats
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# The MovieLens 100K copy beside the repository (as the tests look for it).
DEFAULT_ML100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"


def default_data_source() -> str:
    """The benchmarks' data when ``--data`` is not given.

    Returns:
        ``$TFRS_MOVIES_DATA`` when set, else the ml-100k folder at ``../shared/data/movielens``
        relative to the repository.
    """
    return os.environ.get("TFRS_MOVIES_DATA") or str(DEFAULT_ML100K)


@contextmanager
def timed(store: dict[str, float], key: str) -> Iterator[None]:
    """Context manager writing the block's seconds into ``store``.

    ``store[key]`` receives wall-clock seconds and ``store[key + "_cpu"]`` this process's CPU
    seconds (user + system, all threads): on a machine shared with other work the CPU time is
    the steadier measure of cost, the wall time the one a user waits.

    Args:
        store: receives the two timings.
        key: the name of the timing.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        store[key] = time.perf_counter() - started
        store[key + "_cpu"] = time.process_time() - cpu_started


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 (``numpy.percentile``, linear), mean and max of latencies, in milliseconds.

    Args:
        seconds: (n,) latencies in seconds, n >= 1.

    Returns:
        ``{"p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms"}``.
    """
    milliseconds = np.asarray(seconds, np.float64) * 1e3
    p50, p90, p99 = np.percentile(milliseconds, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(milliseconds.mean()),
        "max_ms": float(milliseconds.max()),
    }


def median_ms(call: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median wall time of ``call`` in milliseconds over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        call()
    laps = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        laps.append(time.perf_counter() - started)
    return float(np.median(laps)) * 1e3


def profile_call(function: Callable[[], Any], top: int = 18) -> str:
    """cProfile of one call: the ``top`` functions by cumulative and by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    function()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def peak_rss_bytes(children: bool = False) -> int:
    """Peak resident set size of this process (or of its waited-for children), in bytes.

    ``ru_maxrss`` is in kilobytes on Linux and in bytes on macOS.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return int(usage.ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def directory_bytes(path: str | Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def format_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, floats: str = "{:.4g}"
) -> str:
    """A right-aligned plain-text table; one row per dict, ``-`` for missing cells.

    Args:
        rows: the table rows.
        columns: the columns in order; default every key in first-seen order.
        floats: format of floats below 1000 (larger ones get thousands separators, no decimals).

    Returns:
        The table: header, rule, one line per row.
    """
    if not rows:
        return "(no rows)"
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, int | np.integer):
            return f"{int(value):,}"
        if isinstance(value, float | np.floating):
            value = float(value)
            return f"{value:,.0f}" if abs(value) >= 1000 else floats.format(value)
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    """``"100_000,1e6"`` -> ``[100000, 1000000]`` (the ``--sizes`` arguments)."""
    return [int(float(s)) for s in text.replace("_", "").split(",") if s.strip()]


@dataclasses.dataclass(frozen=True)
class Target:
    """A benchmark target: ``value`` compared with ``limit`` (``at_least`` or at most)."""

    name: str
    value: float
    limit: float
    at_least: bool

    @property
    def met(self) -> bool:
        """Whether the value is on the right side of the limit."""
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        """``"MET  name: value (target >= limit)"`` (or ``MISS``)."""
        sign = ">=" if self.at_least else "<="
        return (
            f"{'MET ' if self.met else 'MISS'}  {self.name}: {self.value:,.4g} "
            f"(target {sign} {self.limit:,.4g})"
        )
