"""``python -m tfrs_movies.cli ...``: the same as the ``tfrs-movies`` console script."""

import sys

from tfrs_movies.cli import main

sys.exit(main())
