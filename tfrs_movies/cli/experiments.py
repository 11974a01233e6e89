"""``tfrs-movies sweep | tune | compare | analyze``: experiments over many runs.

The handlers import the experiment modules inside the function (they load TensorFlow; see the
package docstring).
"""

from __future__ import annotations

import argparse
import json
import math

from tfrs_movies.cli.arguments import add_config_arguments, config_from_args, whole_number
from tfrs_movies.config import parse_overrides
from tfrs_movies.errors import TfrsMoviesError

# Set per run by --weights/--seeds, so an override of them would be silently replaced.
_PER_RUN_KEYS = (("train", "retrieval_weight"), ("train", "rating_weight"), ("train", "seed"))


def cmd_sweep(args: argparse.Namespace) -> int:
    """Trains weight pairs x seeds into WORKDIR; exit 1 when a run failed."""
    from tfrs_movies.experiments import parse_seeds, parse_weights, run_sweep

    per_run = sorted(
        f"{section}.{key}"
        for section, keys in parse_overrides(args.overrides).items()
        for key in keys
        if (section, key) in _PER_RUN_KEYS
    )
    if per_run:
        raise TfrsMoviesError(
            f"{', '.join(per_run)} are set per run by --weights/--seeds; remove the override"
        )
    weights, seeds = parse_weights(args.weights), parse_seeds(args.seeds)
    result = run_sweep(
        config_from_args(args),
        weights,
        seeds,
        args.workdir,
        y_metric=args.y,
        run_log=None if args.quiet else (lambda message: print(f"    {message}", flush=True)),
    )
    return 1 if result.failed else 0


def _seconds(text: str) -> float:
    """argparse type of --timeout: a finite number of seconds > 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return seconds


def cmd_tune(args: argparse.Namespace) -> int:
    """Runs (or continues) the Optuna study in WORKDIR; prints the best trial's test metrics."""
    from tfrs_movies.evaluation import format_metrics
    from tfrs_movies.experiments.space import build_space, describe_space
    from tfrs_movies.experiments.tune import run_study

    fixed = {
        f"{section}.{key}": value
        for section, keys in parse_overrides(args.overrides).items()
        for key, value in keys.items()
    }
    space = build_space(args.space, fixed=fixed)
    if args.show_space:
        print("\n".join(describe_space(space)))
        return 0
    result = run_study(
        config_from_args(args),
        args.workdir,
        trials=args.trials,
        space=space,
        timeout=args.timeout,
    )
    print(format_metrics(result.test_metrics))
    print(
        f"best trial {result.best_trial} of {result.finished_trials}: validation recall@10 "
        f"{result.best_value:.4f}; config {args.workdir}/best_config.toml, run "
        f"{args.workdir}/best_run"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Prints the headline metrics of runs (and the finished runs of sweeps) side by side."""
    from tfrs_movies.experiments import compare_runs, format_comparison

    comparison = compare_runs(args.runs)
    print(json.dumps(comparison, indent=2) if args.json else format_comparison(comparison))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Clusters and projects a run's movie embeddings; prints where the files went."""
    from tfrs_movies.experiments import analyze_run, format_analysis

    result = analyze_run(
        args.run_dir,
        out_dir=args.out,
        num_clusters=args.clusters,
        min_ratings=args.min_ratings,
        num_labels=args.labels,
        seed=args.seed,
    )
    print(format_analysis(result))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds ``sweep``, ``tune``, ``compare`` and ``analyze``."""
    sweep = commands.add_parser(
        "sweep",
        help="loss-weight sweep: weight pairs x seeds on one split, results table and plot",
        description="Train one run per (weight pair, seed) on the same split (data.split_seed "
        "fixed; only train.seed varies) into WORKDIR/runs/, then write WORKDIR/results.csv, "
        "results.md and tradeoff.png. Re-running the same command skips finished runs and "
        "retries failed ones. Exit status 1 when a run failed.",
    )
    add_config_arguments(sweep)
    sweep.add_argument(
        "--weights",
        required=True,
        metavar="R:S,...",
        help="comma-separated retrieval_weight:rating_weight pairs (retrieval first), e.g. "
        "1:0,0:1,1:1,1:0.1,0.1:1",
    )
    sweep.add_argument(
        "--seeds",
        default="0",
        metavar="N,...",
        help="comma-separated model seeds (train.seed), e.g. 0,1,2 (default 0)",
    )
    sweep.add_argument("--workdir", required=True, metavar="DIR", help="the sweep directory")
    sweep.add_argument(
        "--y",
        default="recall@10",
        choices=("recall@10", "ndcg@10", "recall@100", "factorized_top_100"),
        help="y axis of tradeoff.png (default recall@10)",
    )
    sweep.add_argument(
        "--quiet",
        action="store_true",
        help="only the per-run progress lines, not each run's epoch log",
    )
    sweep.set_defaults(handler=cmd_sweep)

    tune = commands.add_parser(
        "tune",
        help="Optuna study of the settings on the validation split (resumable)",
        description="Search the settings with Optuna (TPE sampler, median pruner on the "
        "per-epoch validation Recall@10) in WORKDIR/study.db. Run the same command again to "
        "continue a stopped study. When TRIALS trials have finished, the best trial's config "
        "is written to WORKDIR/best_config.toml (train --config takes it) and trained once more "
        "into WORKDIR/best_run: the only use of the test split. Overrides fix a key (it is not "
        "searched).",
    )
    add_config_arguments(tune)
    tune.add_argument("--workdir", required=True, metavar="DIR", help="the study directory")
    tune.add_argument(
        "--trials",
        required=True,
        type=whole_number,
        metavar="N",
        help="finished trials (complete or pruned) the study should have in total",
    )
    tune.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="start no new trial after S seconds (the study can be continued later)",
    )
    tune.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="section.key=SPEC",
        help="add or replace a searched setting: a..b (uniform), log:a..b, int:a..b, or "
        "v1,v2,... (choices), e.g. --space model.embedding_dim=32,64,128",
    )
    tune.add_argument("--show-space", action="store_true", help="print the search space and exit")
    tune.set_defaults(handler=cmd_tune)

    compare = commands.add_parser(
        "compare",
        help="side-by-side metrics of runs, sweeps and tuning studies",
        description="Print the headline test metrics of runs side by side; a sweep directory "
        "expands to its finished runs, a tuning study to its best trial's run.",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_SWEEP_OR_STUDY")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(handler=cmd_compare)

    analyze = commands.add_parser(
        "analyze",
        help="cluster and project a run's movie embeddings",
        description="KMeans clusters of the movie embeddings (top titles, dominant genres, genre "
        "purity vs random clusters of the same sizes) and a 2-D PCA plot; writes clusters.json, "
        "clusters.md and projection.png.",
    )
    analyze.add_argument("run_dir", metavar="RUN_DIR")
    analyze.add_argument("--clusters", type=whole_number, default=8, help="KMeans k (default 8)")
    analyze.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/analysis)")
    analyze.add_argument(
        "--min-ratings",
        type=whole_number,
        default=0,
        help="leave out movies with fewer training ratings (default 0)",
    )
    analyze.add_argument(
        "--labels",
        type=whole_number,
        default=15,
        help="most-rated titles labelled in the plot (default 15)",
    )
    analyze.add_argument(
        "--seed", type=whole_number, default=0, help="KMeans random_state (default 0)"
    )
    analyze.set_defaults(handler=cmd_analyze)
