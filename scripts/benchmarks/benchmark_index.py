"""ScaNN index vs. brute force through the exported SavedModel path, over synthetic vectors.

    python scripts/benchmarks/benchmark_index.py --sizes 100000,1000000 --dim 33 --queries 1000

The last line is ``scann_speedup_1m <number>`` (ScaNN / brute-force batched queries/s on the
clustered vectors of the largest size; named ``scann_speedup_<N>`` when that is not 1M).
"""

from __future__ import annotations

import argparse

from common import Target, format_table, parse_sizes
from index_speed import run_index_benchmark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=33, help="vector size (embedding + bias)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out evaluation queries")
    parser.add_argument(
        "--tune-queries",
        type=int,
        default=256,
        help="query sample for export.tune_scann (exact search is in memory)",
    )
    parser.add_argument("--k", type=int, default=100, help="results per query (exported: 100+)")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument(
        "--random-at",
        type=parse_sizes,
        default=[1_000_000],
        help="sizes at which the structureless random case is also run",
    )
    args = parser.parse_args(argv)
    rows = run_index_benchmark(
        args.sizes,
        args.dim,
        args.queries,
        args.k,
        args.target_recall,
        args.tune_queries,
        args.random_at,
    )
    print()
    print(format_table(rows))
    largest = max(r["N"] for r in rows)
    row = next(r for r in rows if r["N"] == largest and r["vectors"] == "clustered")
    for r in rows:
        print(
            Target(
                f"recall@10 ({r['vectors']}, N={r['N']:,})",
                r["recall@10"],
                args.target_recall,
                True,
            ).line()
        )
        print(
            Target(
                f"speedup vs brute force ({r['vectors']}, N={r['N']:,})", r["speedup"], 20.0, True
            ).line()
        )
    name = "1m" if largest == 1_000_000 else str(largest)
    print(f"scann_speedup_{name} {row['speedup']:.2f}")


if __name__ == "__main__":
    main()
