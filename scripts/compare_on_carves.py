"""Compare the model with EASE and iALS on other validation carves (tfrs_movies.experiments.carves).

python scripts/compare_on_carves.py --data ../shared/data/movielens/ml-100k --carves 3,4,5,6,7

Choices are made on the run's own carve, as a run makes them; the test split is never read.
"""

import argparse
import sys

from tfrs_movies.cli import run_reporting_errors
from tfrs_movies.cli.arguments import add_config_arguments, config_from_args
from tfrs_movies.experiments.carves import PEERS, compare_on_carves, parse_carves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument(
        "--carves",
        default="3,4,5,6,7",
        help="second numbers of the carve seeds [data.split_seed, N], e.g. 3,4,5; not 1 (the "
        "run's own carve)",
    )
    args = parser.parse_args(argv)

    def run() -> int:
        comparison = compare_on_carves(config_from_args(args), parse_carves(args.carves))
        gaps = comparison.mean_gaps()
        for peer in PEERS:
            print(
                f"mean over {len(comparison.carves)} carves, model vs {peer}: "
                + ", ".join(f"{metric} {100 * gap:+.1f}%" for metric, gap in gaps[peer].items())
            )
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
