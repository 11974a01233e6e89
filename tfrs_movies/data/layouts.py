"""The MovieLens file layouts as data: one table drives the reader in :mod:`.movielens`.

GroupLens ships MovieLens in three layouts, told apart by their file names:

* ``ml-100k``: ``u.data`` (tab separated ratings), ``u.item`` (``|`` separated, 19 genre flags),
  ``u.user`` (demographics); ISO-8859-1.
* ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::`` separated); ISO-8859-1.
* CSV (ml-latest-small, ml-latest, ml-20m, ml-25m): ``ratings.csv`` and ``movies.csv`` with a
  header line; UTF-8; no user file.

The decoding rules (genre names, age buckets, occupation labels) are those of the tfds
``movielens`` builder (``tensorflow_datasets/structured/movielens_parsing.py``), so every source
yields the same values for the same archive.
"""

from __future__ import annotations

import dataclasses

from tfrs_movies.data.schema import GENRES


@dataclasses.dataclass(frozen=True)
class Table:
    """One delimited file of a layout.

    Attributes:
        file: member name, e.g. ``u.data``.
        separator: field separator (``\\t``, ``|``, ``::`` or ``,``).
        columns: field names in file order. Ratings tables list user, movie, rating, timestamp
            in that order; movie tables start with id and title. With ``header`` a header line
            must name at least these columns (in any order).
        header: the first line names the columns (the CSV family; parsed with quoting).
        description: what a line holds, for error messages.
    """

    file: str
    separator: str
    columns: tuple[str, ...]
    header: bool
    description: str


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one MovieLens layout stores ratings, movies and users.

    Attributes:
        name: ``ml-100k``, ``ml-1m`` or ``csv``.
        description: the layout and its files, for error messages.
        encoding: text encoding of every file (a UTF-8 byte-order mark overrides it).
        ratings: the ratings table.
        movies: the movie table.
        users: the user table, or None when users are only the ids that rated (CSV family).
        genre_flag_columns: names of the 0/1 genre columns ending each movie line (ml-100k);
            None when the ``genres`` column holds ``|``-separated names instead.
        age_buckets: tfds' bucketization of raw ages (the largest threshold <= age, else 1);
            None when the file's ages are already bucketized.
        occupations: occupation field -> tfds label (ml-100k words, ml-1m codes).
        rating_scale: the (lowest, highest) star rating the layout allows.
    """

    name: str
    description: str
    encoding: str
    ratings: Table
    movies: Table
    users: Table | None
    genre_flag_columns: tuple[str, ...] | None
    age_buckets: tuple[int, ...] | None
    occupations: dict[str, str]
    rating_scale: tuple[float, float]

    @property
    def files(self) -> tuple[str, ...]:
        """The files a copy must have, in the order messages name them."""
        tables = [self.ratings, self.movies] + ([self.users] if self.users else [])
        return tuple(table.file for table in tables)


# Genre spellings of the files that differ from the tfds label (ml-1m's "Children's").
GENRE_ALIASES = {"Children's": "Children"}

# u.item's 19 genre flag columns: the tfds labels in the same order, except that "unknown"
# comes first and IMAX and "(no genres listed)" (added in later releases) are absent.
_GENRE_FLAGS_100K = ("Unknown",) + tuple(
    genre for genre in GENRES if genre not in ("Unknown", "IMAX", "(no genres listed)")
)

# tfds' mapping of ml-100k occupation words to the labels shared with ml-1m.
_OCCUPATIONS_100K = {
    "administrator": "clerical/admin",
    "artist": "artist",
    "doctor": "doctor/health care",
    "educator": "academic/educator",
    "engineer": "technician/engineer",
    "entertainment": "entertainment",
    "executive": "executive/managerial",
    "healthcare": "doctor/health care",
    "homemaker": "homemaker",
    "lawyer": "lawyer",
    "librarian": "librarian",
    "marketing": "sales/marketing",
    "none": "other/not specified",
    "other": "other/not specified",
    "programmer": "programmer",
    "retired": "retired",
    "salesman": "sales/marketing",
    "scientist": "scientist",
    "student": "student",
    "technician": "technician/engineer",
    "writer": "writer",
}

# ml-1m users.dat occupation codes 0..20, as tfds lists them; tfds merges "K-12 student" (10)
# and "college/grad student" (4) into "student".
_OCCUPATIONS_1M = {
    str(code): label
    for code, label in enumerate(
        (
            "other/not specified",
            "academic/educator",
            "artist",
            "clerical/admin",
            "student",  # college/grad student
            "customer service",
            "doctor/health care",
            "executive/managerial",
            "farmer",
            "homemaker",
            "student",  # K-12 student
            "lawyer",
            "programmer",
            "retired",
            "sales/marketing",
            "scientist",
            "self-employed",
            "technician/engineer",
            "tradesman/craftsman",
            "unemployed",
            "writer",
        )
    )
}

_RATING_COLUMNS = ("user id", "movie id", "rating", "timestamp")

# Detection tries the layouts in this order.
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        name="ml-100k",
        description="ml-100k (u.data, u.item, u.user)",
        encoding="ISO-8859-1",
        ratings=Table(
            file="u.data",
            separator="\t",
            columns=_RATING_COLUMNS,
            header=False,
            description="user id <tab> item id <tab> rating <tab> timestamp",
        ),
        movies=Table(
            file="u.item",
            separator="|",
            columns=(
                "movie id",
                "title",
                "release date",
                "video release date",
                "IMDb URL",
                *_GENRE_FLAGS_100K,
            ),
            header=False,
            description="movie id | title | release date | video release date | IMDb URL | "
            "19 genre flags",
        ),
        users=Table(
            file="u.user",
            separator="|",
            columns=("user id", "age", "gender", "occupation", "zip code"),
            header=False,
            description="user id | age | gender | occupation | zip code",
        ),
        genre_flag_columns=_GENRE_FLAGS_100K,
        age_buckets=(18, 25, 35, 45, 50, 56),
        occupations=_OCCUPATIONS_100K,
        rating_scale=(1.0, 5.0),
    ),
    Layout(
        name="ml-1m",
        description="ml-1m (ratings.dat, movies.dat, users.dat)",
        encoding="ISO-8859-1",
        ratings=Table(
            file="ratings.dat",
            separator="::",
            columns=_RATING_COLUMNS,
            header=False,
            description="user id :: movie id :: rating :: timestamp",
        ),
        movies=Table(
            file="movies.dat",
            separator="::",
            columns=("movie id", "title", "genres"),
            header=False,
            description="movie id :: title :: genres",
        ),
        users=Table(
            file="users.dat",
            separator="::",
            columns=("user id", "gender", "age", "occupation", "zip code"),
            header=False,
            description="user id :: gender :: age :: occupation :: zip code",
        ),
        genre_flag_columns=None,
        age_buckets=None,
        occupations=_OCCUPATIONS_1M,
        rating_scale=(1.0, 5.0),
    ),
    Layout(
        name="csv",
        description="ml-latest-small / ml-latest / ml-20m / ml-25m (ratings.csv, movies.csv)",
        encoding="utf-8",
        ratings=Table(
            file="ratings.csv",
            separator=",",
            columns=("userId", "movieId", "rating", "timestamp"),
            header=True,
            description="comma-separated userId,movieId,rating,timestamp",
        ),
        movies=Table(
            file="movies.csv",
            separator=",",
            columns=("movieId", "title", "genres"),
            header=True,
            description="comma-separated movieId,title,genres",
        ),
        users=None,
        genre_flag_columns=None,
        age_buckets=None,
        occupations={},
        rating_scale=(0.5, 5.0),
    ),
)
