"""Training throughput: our model under a preset vs. the TFRS multitask tutorial, in one process.

    python scripts/benchmarks/benchmark_training.py --preset tutorial
    python scripts/benchmarks/benchmark_training.py --preset default

Each measurement runs ``--repeats`` times (default 3) in the same process; the table shows the
median run and every run's examples/s. The last line is ``examples_per_s <number>`` (our model,
op determinism on as in real runs; the median).
"""

from __future__ import annotations

import argparse

from common import Target, format_table
from throughput import PRESETS, run_training_benchmark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tutorial", choices=sorted(PRESETS))
    parser.add_argument(
        "--data",
        default=None,
        help="SOURCE (default: $TFRS_MOVIES_DATA, else ../shared/data/movielens/ml-100k "
        "beside the repository)",
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--no-tutorial", action="store_true", help="skip the tutorial re-implementation"
    )
    parser.add_argument(
        "--deterministic-only", action="store_true", help="measure ours only with op determinism on"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per measurement; the median is reported"
    )
    parser.add_argument("overrides", nargs="*", help="extra section.key=value overrides")
    args = parser.parse_args(argv)
    result = run_training_benchmark(
        args.preset,
        args.data,
        args.epochs,
        args.overrides,
        compare_tutorial=False if args.no_tutorial else None,
        nondeterministic_too=not args.deterministic_only,
        repeats=args.repeats,
    )
    print()
    print(format_table(result["rows"]))
    ours = result["ours"]
    print(
        f"\nours: {ours['fit_examples']:,} examples/epoch, {ours['epochs']} epochs, negatives "
        f"{ours['negatives']}; data load {result['load_seconds']:.2f}s + prepare "
        f"{ours['prep_seconds']:.2f}s + build {ours['build_seconds']:.2f}s + fit "
        f"{ours['fit_seconds']:.2f}s"
    )
    if result["ratio"]:
        for name, value in result["ratio"].items():
            print(f"ratio ours/tutorial ({name}): {value:.2f}x")
        print(
            Target(
                "ours / tutorial without metrics",
                result["ratio"]["all_epochs_vs_no_metrics"],
                5.0,
                True,
            ).line()
        )
    print(f"examples_per_s {ours['examples_per_s']:.1f}")


if __name__ == "__main__":
    main()
