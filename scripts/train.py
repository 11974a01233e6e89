"""Train, evaluate and export a run: the same as ``tfrs-movies train`` (see --help)."""

import sys

from tfrs_movies.cli import console_main

if __name__ == "__main__":
    sys.exit(console_main(["train", *sys.argv[1:]]))
