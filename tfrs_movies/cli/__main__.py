"""``python -m tfrs_movies.cli ...``: the same as the ``tfrs-movies`` console script."""

import sys

from tfrs_movies.cli import console_main

sys.exit(console_main())
