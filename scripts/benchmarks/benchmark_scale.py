"""Data preparation, one training epoch and peak RSS on synthetic MovieLens-shaped data by size.

    python scripts/benchmarks/benchmark_scale.py --sizes 100000,1000000,10000000,25000000

Each size runs in a fresh subprocess (so peak RSS is per size). Sizes above ``--max-run`` are
not run but extrapolated (power law through the two largest measured sizes) unless the
measured rows predict that they fit in ``--budget-minutes``. With ``--max-epoch-steps`` an
epoch longer than that is timed on a sample of steps and projected (marked in the table).
The last line is ``epoch_seconds_<size> <number>`` for the largest size (measured, projected
or extrapolated, as marked).

    python scripts/benchmarks/benchmark_scale.py --vocab-users 10000,160000

times training steps at a fixed batch size for each user-vocabulary size (movies and ratings
in proportion), all in one process, and checks that the largest is within 1.3x of the smallest;
its last line is ``step_ratio <number>``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from common import Target, format_table, parse_sizes
from scale import extrapolate_scale, growth_factors, run_scale_subprocess, scale_one_size
from step_time import vocabulary_step_times

from tfrs_movies.log import print_line

KEYS = ("prep s", "epoch s", "peak RSS GiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=[100_000, 1_000_000, 10_000_000, 25_000_000]
    )
    parser.add_argument(
        "--max-run",
        type=int,
        default=10_000_000,
        help="sizes above this run only if extrapolation fits the budget",
    )
    parser.add_argument("--budget-minutes", type=float, default=12.0)
    parser.add_argument("--no-train", action="store_true", help="data preparation only")
    parser.add_argument(
        "--max-epoch-steps",
        type=int,
        default=None,
        help="time at most this many steps of an epoch and project the rest "
        "(marked 'projected' in the table)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra section.key=value overrides (what-if runs)"
    )
    parser.add_argument(
        "--vocab-users",
        type=parse_sizes,
        default=None,
        help="instead: step time at a fixed batch size for these user-vocabulary sizes",
    )
    parser.add_argument("--steps", type=int, default=200, help="steps per timing (--vocab-users)")
    parser.add_argument("--one-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.vocab_users is not None:
        _vocabulary_main(args)
        return
    if args.one_size is not None:  # the child process
        row = scale_one_size(
            args.one_size,
            train=not args.no_train,
            max_epoch_steps=args.max_epoch_steps,
            overrides=args.overrides,
            log=print_line,
        )
        print(json.dumps(row))
        return
    rows: list[dict] = []
    for size in sorted(args.sizes):
        if size > args.max_run and len(rows) >= 2:
            guess = extrapolate_scale(rows, size)
            minutes = (guess.get("prep s", 0) + guess.get("epoch s", 0)) / 60
            if args.max_epoch_steps is not None:
                # Epochs are projected from a step sample: the run costs its preparation plus
                # about what the sample cost at the largest measured size.
                minutes = (
                    2 * guess.get("prep s", 0) + rows[-1]["process s"] - rows[-1]["prep s"]
                ) / 60
            if minutes > args.budget_minutes:
                print(
                    f"size {size:,}: extrapolated {minutes:.1f} min > budget "
                    f"{args.budget_minutes} min: not run",
                    flush=True,
                )
                rows.append(guess)
                continue
        print(f"size {size:,} ...", flush=True)
        rows.append(
            run_scale_subprocess(
                Path(__file__).resolve(),
                size,
                train=not args.no_train,
                max_epoch_steps=args.max_epoch_steps,
                overrides=args.overrides,
            )
        )
        print(format_table(rows[-1:]), flush=True)
    growth_factors(rows, KEYS)
    columns = [
        "overrides",
        "ratings",
        "users",
        "movies",
        "negatives",
        "load s",
        "prepare s",
        "prep s",
        "epoch s",
        "epoch CPU s",
        "epoch",
        "ex/s",
        "prep RSS GiB",
        "peak RSS GiB",
        "note",
        "ratings_x",
        *(f"{k}_x" for k in KEYS),
    ]
    print()
    print(format_table(rows, [c for c in columns if any(c in r for r in rows)]))
    last = rows[-1]
    tag = "EXTRAPOLATED " if last.get("note") else ""
    if "projected" in str(last.get("epoch", "")):
        tag += "(epoch PROJECTED from a step sample) "
    if last["ratings"] >= 25_000_000:
        for key, limit in (("prep s", 60.0), ("epoch s", 300.0), ("peak RSS GiB", 8.0)):
            if last.get(key) is not None:
                print(tag + Target(f"{key} at {last['ratings']:,}", last[key], limit, False).line())
    if last.get("epoch s") is not None:
        print(f"epoch_seconds_{last['ratings']} {last['epoch s']:.1f}")


def _vocabulary_main(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    rows = vocabulary_step_times(args.vocab_users, steps=args.steps, overrides=args.overrides)
    print(format_table(rows))
    ratio = rows[-1]["step ms"] / rows[0]["step ms"]
    print(f"load average (1 min) before / after: {load:.2f} / {os.getloadavg()[0]:.2f}")
    name = f"step time {rows[-1]['users']:,} / {rows[0]['users']:,} users"
    print(Target(name, ratio, 1.3, False).line())
    print(f"step_ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
