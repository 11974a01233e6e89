"""Command line: ``tfrs-movies <command> ...``; thin wrappers over the library.

Every command is a subparser with a handler ``_cmd_<name>(args) -> int``; add new ones in
:func:`build_parser`. Errors meant for a person (:class:`~tfrs_movies.errors.TfrsMoviesError`,
missing files, permissions, bad arguments) are printed as one ``error: ...`` line on stderr, exit
status 2; Ctrl-C exits with 130. Neither prints a traceback. Native log lines of TensorFlow and
ScaNN are hidden unless ``--verbose`` (see :mod:`tfrs_movies.log`).

Each handler imports what its command needs inside the function: importing TensorFlow takes
seconds (measured: ``tfrs-movies --help`` 0.2 s and ``data info synthetic`` 0.6 s with these
imports deferred, against 10 s or more for importing TensorFlow and the training, recommend and
experiment modules at the top, on this 2-core machine under load), and data-only commands never
need it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tfrs_movies import __version__
from tfrs_movies.errors import TfrsMoviesError, one_line
from tfrs_movies.log import VERBOSE_ENV, set_native_logs

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def _whole_number(text: str) -> int:
    """argparse type of counts: rejects fractions and non-finite values ('nan', 'inf')."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _cmd_data_info(args: argparse.Namespace) -> int:
    from tfrs_movies.data import describe, format_description, load_source

    ratings = load_source(
        args.source, manual_dir=args.manual_dir, data_dir=args.data_dir, progress=args.progress
    )
    info = describe(ratings)
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect data sources")
    data_commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_commands.required = True
    info = data_commands.add_parser(
        "info",
        help="load a source and print its statistics",
        description="Load SOURCE and print users, movies, ratings, histogram, sparsity, dates.",
    )
    info.add_argument(
        "source",
        metavar="SOURCE",
        nargs="?",
        default=None,
        help="MovieLens folder or .zip, tfds:movielens/<config>, or "
        "synthetic[:users=N,movies=N,ratings=N,seed=N] (default: $TFRS_MOVIES_DATA, else "
        "tfds:movielens/100k-ratings)",
    )
    info.add_argument(
        "--manual-dir",
        metavar="DIR",
        default=None,
        help="folder holding the genuine GroupLens archive, so tfds builds offline",
    )
    info.add_argument("--data-dir", metavar="DIR", default=None, help="tfds data directory")
    info.add_argument("--json", action="store_true", help="print the statistics as JSON")
    info.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )
    info.set_defaults(handler=_cmd_data_info)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments shared by train and sweep: config file, data source, overrides."""
    parser.add_argument("--config", metavar="FILE", help="TOML or JSON config file")
    parser.add_argument(
        "--data",
        metavar="SOURCE",
        help="MovieLens folder or .zip, tfds:movielens/<config>, or synthetic[:...] "
        "(default: $TFRS_MOVIES_DATA, else tfds:movielens/100k-ratings)",
    )
    parser.add_argument("--manual-dir", metavar="DIR", help="tfds manual_dir (offline archives)")
    parser.add_argument("--data-dir", metavar="DIR", help="tfds data directory")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, e.g. train.epochs=5 train.rating_weight=0.5",
    )


def config_from_args(args: argparse.Namespace):
    """The resolved config: defaults, --config file, --data/--manual-dir, then overrides."""
    from tfrs_movies.config import load_config

    overrides = []
    for key, value in (
        ("source", args.data),
        ("manual_dir", args.manual_dir),
        ("data_dir", args.data_dir),
    ):
        if value is not None:
            overrides.append(f"data.{key}={value}")
    return load_config(args.config, [*overrides, *args.overrides])


def _default_workdir(config) -> str:
    from tfrs_movies.data import default_source

    source = config.data.source or default_source()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", source.rstrip("/").split("/")[-1]).strip("-")
    return f"runs/{slug or 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"


def _cmd_train(args: argparse.Namespace) -> int:
    from tfrs_movies.evaluation.pipeline import evaluate_pipeline
    from tfrs_movies.train import train_and_evaluate

    if args.strategy is not None:
        args.overrides = [*args.overrides, f"train.strategy={args.strategy}"]
    config = config_from_args(args)
    workdir = args.workdir or _default_workdir(config)
    result = train_and_evaluate(config, workdir, resume=args.resume, overwrite=args.overwrite)
    # Training never scores the exported Recommender; the finished run is scored here. Empty
    # metrics: a non-chief worker of a multi-worker run, which leaves that to the chief.
    if result.metrics and "pipeline" not in result.metrics:
        evaluate_pipeline(result.run_dir, prepared=result.prepared)
    print(f"run directory: {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from tfrs_movies.evaluation.model import format_metrics
    from tfrs_movies.rundir import RunPaths, verify_run

    paths = RunPaths(Path(args.run_dir))
    verify_run(paths.root)
    metrics = json.loads(paths.metrics.read_text())
    print(json.dumps(metrics, indent=2) if args.json else format_metrics(metrics))
    return 0


def _print_records(records, as_json: bool, header: str) -> None:
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return
    print(header)
    if not records:
        print("  (nothing left to recommend)")
        return
    title_width = min(60, max(len(r.title) for r in records))
    rating_column = records[0].predicted_rating is not None
    print(
        f"{'rank':>4}  {'movie':>7}  {'title':<{title_width}}  {'score':>7}"
        + ("  predicted" if rating_column else "")
    )
    for r in records:
        line = f"{r.rank:>4}  {r.movie_id:>7}  {r.title[:title_width]:<{title_width}}  "
        line += f"{r.retrieval_score:>7.3f}"
        if rating_column:
            line += f"  {r.predicted_rating:>9.2f}"
        print(line)


@contextlib.contextmanager
def _lookup_errors_reported():
    """The Recommender's KeyError/ValueError (unknown user or movie, bad k) as a one-line error."""
    try:
        yield
    except (KeyError, ValueError) as error:
        raise TfrsMoviesError(error.args[0] if error.args else str(error)) from None


def _cmd_recommend(args: argparse.Namespace) -> int:
    from tfrs_movies.recommend import Recommender

    recommender = Recommender.load(args.run_dir)
    with _lookup_errors_reported():
        records = recommender.recommend(
            args.user,
            k=args.k,
            num_candidates=args.num_candidates,
            exclude_seen=not args.include_seen,
            min_ratings=args.min_ratings,
        )
    _print_records(records, args.json, f"top {args.k} movies for user {args.user}:")
    return 0


def _cmd_similar(args: argparse.Namespace) -> int:
    from tfrs_movies.recommend import Recommender

    recommender = Recommender.load(args.run_dir)
    with _lookup_errors_reported():
        row = recommender.movie_row(args.movie)
        records = recommender.similar_movies(args.movie, k=args.k)
    title = recommender.titles[row]
    _print_records(records, args.json, f"movies most similar to {title}:")
    return 0


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train, evaluate and export a run",
        description="Train the multitask model, evaluate it beside baselines and export a run "
        "directory (ScaNN index, exact index, ranking model, metrics, manifest).",
    )
    _add_config_arguments(train)
    train.add_argument(
        "--workdir", metavar="RUN_DIR", help="run directory (default runs/<data>-<time>)"
    )
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run")
    train.add_argument(
        "--strategy",
        choices=("auto", "one_device", "mirrored", "multi_worker"),
        help="tf.distribute strategy (= train.strategy; multi_worker reads TF_CONFIG)",
    )
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="verify a run and print its metrics")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--json", action="store_true", help="print metrics.json")
    evaluate.set_defaults(handler=_cmd_evaluate)

    recommend = commands.add_parser("recommend", help="top movies for a user of a run")
    recommend.add_argument("run_dir", metavar="RUN_DIR")
    recommend.add_argument("--user", required=True, metavar="ID", help="user id")
    recommend.add_argument(
        "-k", type=_whole_number, default=10, help="how many movies (default 10)"
    )
    recommend.add_argument(
        "--num-candidates",
        type=_whole_number,
        default=100,
        help="retrieved candidates to re-rank (default 100)",
    )
    recommend.add_argument(
        "--min-ratings",
        type=_whole_number,
        default=0,
        help="skip movies with fewer training ratings",
    )
    recommend.add_argument(
        "--include-seen", action="store_true", help="keep movies the user already rated"
    )
    recommend.add_argument("--json", action="store_true", help="machine-readable output")
    recommend.set_defaults(handler=_cmd_recommend)

    similar = commands.add_parser("similar", help="movies similar to a movie")
    similar.add_argument("run_dir", metavar="RUN_DIR")
    similar.add_argument(
        "--movie",
        required=True,
        metavar="ID_OR_TITLE",
        help='movie id or exact title, e.g. "Star Wars (1977)"',
    )
    similar.add_argument("-k", type=_whole_number, default=10, help="how many movies (default 10)")
    similar.add_argument("--json", action="store_true", help="machine-readable output")
    similar.set_defaults(handler=_cmd_similar)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from tfrs_movies.config import parse_overrides
    from tfrs_movies.experiments import parse_seeds, parse_weights, run_sweep

    per_run = sorted(
        f"{section}.{key}"
        for section, keys in parse_overrides(args.overrides).items()
        for key in keys
        if (section, key)
        in (("train", "retrieval_weight"), ("train", "rating_weight"), ("train", "seed"))
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


def _cmd_compare(args: argparse.Namespace) -> int:
    from tfrs_movies.experiments import compare_runs, format_comparison

    comparison = compare_runs(args.runs)
    print(json.dumps(comparison, indent=2) if args.json else format_comparison(comparison))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
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


def _add_experiment_commands(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="loss-weight sweep: weight pairs x seeds on one split, results table and plot",
        description="Train one run per (weight pair, seed) on the same split (data.split_seed "
        "fixed; only train.seed varies) into WORKDIR/runs/, then write WORKDIR/results.csv, "
        "results.md and tradeoff.png. Re-running the same command skips finished runs and "
        "retries failed ones. Exit status 1 when a run failed.",
    )
    _add_config_arguments(sweep)
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
    sweep.set_defaults(handler=_cmd_sweep)

    compare = commands.add_parser(
        "compare",
        help="side-by-side metrics of runs and sweeps",
        description="Print the headline test metrics of runs side by side; a sweep directory "
        "expands to its finished runs.",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(handler=_cmd_compare)

    analyze = commands.add_parser(
        "analyze",
        help="cluster and project a run's movie embeddings",
        description="KMeans clusters of the movie embeddings (top titles, dominant genres, genre "
        "purity vs random clusters of the same sizes) and a 2-D PCA plot; writes clusters.json, "
        "clusters.md and projection.png.",
    )
    analyze.add_argument("run_dir", metavar="RUN_DIR")
    analyze.add_argument("--clusters", type=_whole_number, default=8, help="KMeans k (default 8)")
    analyze.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/analysis)")
    analyze.add_argument(
        "--min-ratings",
        type=_whole_number,
        default=0,
        help="leave out movies with fewer training ratings (default 0)",
    )
    analyze.add_argument(
        "--labels",
        type=_whole_number,
        default=15,
        help="most-rated titles labelled in the plot (default 15)",
    )
    analyze.add_argument(
        "--seed", type=_whole_number, default=0, help="KMeans random_state (default 0)"
    )
    analyze.set_defaults(handler=_cmd_analyze)


def _cmd_serve(args: argparse.Namespace) -> int:
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


def _add_serve_command(commands: argparse._SubParsersAction) -> None:
    def port_number(text: str) -> int:
        try:
            port = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
        if not 0 < port < 65536:
            raise argparse.ArgumentTypeError(f"port must be within 1-65535, got {port}")
        return port

    def worker_count(text: str) -> int:
        try:
            workers = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid worker count {text!r}") from None
        if not 0 < workers <= 64:
            raise argparse.ArgumentTypeError(f"workers must be within 1-64, got {workers}")
        return workers

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
    serve.set_defaults(handler=_cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="tfrs-movies",
        description="Multitask two-tower movie recommender on TensorFlow Recommenders.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log progress at INFO level and show TensorFlow's and ScaNN's native log lines "
        f"(also: {VERBOSE_ENV}=1)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_data_commands(commands)
    _add_model_commands(commands)
    _add_serve_command(commands)
    _add_experiment_commands(commands)
    return parser


def run_reporting_errors(handler) -> int:
    """Runs ``handler()``; errors meant for a person become one stderr line and exit 2."""
    try:
        return int(handler() or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (TfrsMoviesError, FileNotFoundError, PermissionError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: arguments without the program name; None means ``sys.argv[1:]``.

    Returns:
        exit status: 0 on success, 2 on a reported error, 130 on ^C.

    Raises:
        SystemExit: after ``--help`` or ``--version`` (status 0), or a usage error (status 2,
            one ``error:`` line on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        set_native_logs(verbose=True)  # before any handler imports TensorFlow
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    return run_reporting_errors(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
