"""``tfrs-movies train | evaluate | recommend | similar``: one run, from training to queries.

The handlers import TensorFlow-backed modules inside the function (see the package docstring).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tfrs_movies.cli.arguments import add_config_arguments, config_from_args, whole_number
from tfrs_movies.config import Config
from tfrs_movies.errors import TfrsMoviesError

if TYPE_CHECKING:  # importing recommend loads TensorFlow; only the annotations need it here
    from tfrs_movies.recommend import Recommendation


def default_workdir(config: Config) -> str:
    """``runs/<last part of the source>-<local time>``, the run directory when none is given."""
    from tfrs_movies.data import default_source

    source = config.data.source or default_source()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", source.rstrip("/").split("/")[-1]).strip("-")
    return f"runs/{slug or 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> int:
    """Trains, evaluates and exports a run, then scores its exported pipeline."""
    from tfrs_movies.rundir import check_workdir

    if args.strategy is not None:
        args.overrides = [*args.overrides, f"train.strategy={args.strategy}"]
    config = config_from_args(args)
    workdir = args.workdir or default_workdir(config)
    # A bad --workdir fails here in 0.2-0.5 s rather than after the imports below, which load
    # TensorFlow (measured: 4-9 s to the same error). train_and_evaluate checks again for
    # library callers; the check is cheap and repeatable.
    check_workdir(workdir, resume=args.resume, overwrite=args.overwrite)

    from tfrs_movies.evaluation.pipeline import evaluate_pipeline
    from tfrs_movies.train import train_and_evaluate

    result = train_and_evaluate(config, workdir, resume=args.resume, overwrite=args.overwrite)
    # Training never scores the exported Recommender; the finished run is scored here. Empty
    # metrics: a non-chief worker of a multi-worker run, which leaves that to the chief.
    if result.metrics and "pipeline" not in result.metrics:
        evaluate_pipeline(result.run_dir, prepared=result.prepared)
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Verifies a run and prints its metrics (metrics.json with ``--json``)."""
    from tfrs_movies.evaluation.model import format_metrics
    from tfrs_movies.rundir import RunPaths, verify_run

    paths = RunPaths(Path(args.run_dir))
    verify_run(paths.root)
    metrics = json.loads(paths.metrics.read_text())
    print(json.dumps(metrics, indent=2) if args.json else format_metrics(metrics))
    return 0


def print_records(records: Sequence[Recommendation], as_json: bool, header: str) -> None:
    """Prints recommendations as a table under ``header``, or as a JSON list."""
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
def lookup_errors_reported() -> Iterator[None]:
    """The Recommender's KeyError/ValueError (unknown user or movie, bad k) as a one-line error."""
    try:
        yield
    except (KeyError, ValueError) as error:
        raise TfrsMoviesError(error.args[0] if error.args else str(error)) from None


def cmd_recommend(args: argparse.Namespace) -> int:
    """Prints the top movies for a user of a run."""
    from tfrs_movies.recommend import Recommender

    recommender = Recommender.load(args.run_dir)
    with lookup_errors_reported():
        records = recommender.recommend(
            args.user,
            k=args.k,
            num_candidates=args.num_candidates,
            exclude_seen=not args.include_seen,
            min_ratings=args.min_ratings,
        )
    print_records(records, args.json, f"top {args.k} movies for user {args.user}:")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    """Prints the movies nearest to a movie (by id or exact title) in embedding space."""
    from tfrs_movies.recommend import Recommender

    recommender = Recommender.load(args.run_dir)
    with lookup_errors_reported():
        row = recommender.movie_row(args.movie)
        records = recommender.similar_movies(args.movie, k=args.k)
    title = recommender.titles[row]
    print_records(records, args.json, f"movies most similar to {title}:")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds ``train``, ``evaluate``, ``recommend`` and ``similar``."""
    train = commands.add_parser(
        "train",
        help="train, evaluate and export a run",
        description="Train the multitask model, evaluate it beside baselines and export a run "
        "directory (ScaNN index, exact index, ranking model, metrics, manifest).",
    )
    add_config_arguments(train)
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
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="verify a run and print its metrics")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--json", action="store_true", help="print metrics.json")
    evaluate.set_defaults(handler=cmd_evaluate)

    recommend = commands.add_parser("recommend", help="top movies for a user of a run")
    recommend.add_argument("run_dir", metavar="RUN_DIR")
    recommend.add_argument("--user", required=True, metavar="ID", help="user id")
    recommend.add_argument("-k", type=whole_number, default=10, help="how many movies (default 10)")
    recommend.add_argument(
        "--num-candidates",
        type=whole_number,
        default=100,
        help="retrieved candidates to re-rank (default 100)",
    )
    recommend.add_argument(
        "--min-ratings",
        type=whole_number,
        default=0,
        help="skip movies with fewer training ratings",
    )
    recommend.add_argument(
        "--include-seen", action="store_true", help="keep movies the user already rated"
    )
    recommend.add_argument("--json", action="store_true", help="machine-readable output")
    recommend.set_defaults(handler=cmd_recommend)

    similar = commands.add_parser("similar", help="movies similar to a movie")
    similar.add_argument("run_dir", metavar="RUN_DIR")
    similar.add_argument(
        "--movie",
        required=True,
        metavar="ID_OR_TITLE",
        help='movie id or exact title, e.g. "Star Wars (1977)"',
    )
    similar.add_argument("-k", type=whole_number, default=10, help="how many movies (default 10)")
    similar.add_argument("--json", action="store_true", help="machine-readable output")
    similar.set_defaults(handler=cmd_similar)
