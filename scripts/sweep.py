"""Loss-weight sweep: the same as ``tfrs-movies sweep`` (see --help)."""

import sys

from tfrs_movies.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
