"""Loss-weight sweep: the same as ``tfrs-movies sweep`` (see --help)."""

import sys

from tfrs_movies.cli import console_main

if __name__ == "__main__":
    sys.exit(console_main(["sweep", *sys.argv[1:]]))
