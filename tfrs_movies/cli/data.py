"""``tfrs-movies data ...``: inspect data sources."""

from __future__ import annotations

import argparse
import json


def cmd_data_info(args: argparse.Namespace) -> int:
    """Loads SOURCE and prints its statistics (as JSON with ``--json``)."""
    # Deferred (see the package docstring): importing the data package (numpy) takes 0.25 s.
    from tfrs_movies.data import describe, format_description, load_source

    ratings = load_source(
        args.source, manual_dir=args.manual_dir, data_dir=args.data_dir, progress=args.progress
    )
    info = describe(ratings)
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds ``data info``."""
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
    info.set_defaults(handler=cmd_data_info)
