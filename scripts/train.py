"""Train, evaluate and export a run: the same as ``tfrs-movies train`` (see --help)."""

import sys

from tfrs_movies.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
