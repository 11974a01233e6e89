"""Measure recommendations for users who were not in training (tfrs_movies.experiments.new_users).

python scripts/evaluate_new_users.py --data ../shared/data/movielens/ml-100k \
        --workdir runs/new-users
"""

import argparse
import json
import sys

from tfrs_movies.cli import run_reporting_errors
from tfrs_movies.cli.arguments import add_config_arguments, config_from_args
from tfrs_movies.experiments import evaluate_new_users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--workdir", required=True, help="run directory for the trained model")
    parser.add_argument("--held-out-fraction", type=float, default=0.1)
    parser.add_argument("--num-given", type=int, default=10)
    args = parser.parse_args(argv)

    def run() -> int:
        summary = evaluate_new_users(
            config_from_args(args), args.workdir, args.held_out_fraction, args.num_given
        )
        print(json.dumps(summary, indent=2))
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
