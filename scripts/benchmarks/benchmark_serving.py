"""Serving: ``Recommender.recommend()`` latency for one user and throughput for batches.

    python scripts/benchmarks/benchmark_serving.py /tmp/r1 --requests 500

Measures :class:`~tfrs_movies.Recommender` (ScaNN candidates) and, beside it, exact numpy
retrieval (``recommend_speed.ExactNumpyRecommender``), with per-stage timings and cProfile
output. The last line is ``users_per_s <number>`` (the Recommender, batches of 1,000).
"""

from __future__ import annotations

import argparse

from common import Target, format_table
from recommend_speed import run_serving_benchmark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--requests", type=int, default=500, help="single-user requests")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batch-rounds", type=int, default=5)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    result = run_serving_benchmark(
        args.run_dir, args.requests, args.batch, args.batch_rounds, profile=not args.no_profile
    )
    for name, text in result["profiles"].items():
        print(f"\n===== cProfile: {name} =====\n{text}")
    print(
        f"\n{result['num_users']:,} users, {result['num_movies']:,} movies; load "
        f"{result['load_seconds']:.2f}s; exact-numpy top-10 overlap with ScaNN: "
        f"{result['exact_overlap']:.4f}"
    )
    print("\nper-stage p50 (ms):")
    for name, ms in result["stages"].items():
        print(f"  {name:<45} {ms:10.3f}")
    print()
    print(format_table(result["rows"]))
    throughput = f"users/s (b={args.batch})"
    for row in result["rows"]:
        name = row["recommender"]
        print(Target(f"{name}: p50 ms", row["p50_ms"], 2.0, False).line())
        print(Target(f"{name}: p99 ms", row["p99_ms"], 5.0, False).line())
        print(Target(f"{name}: users/s", row[throughput], 5000.0, True).line())
    print(f"users_per_s {result['rows'][0][throughput]:.1f}")


if __name__ == "__main__":
    main()
