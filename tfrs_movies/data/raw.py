"""Reads MovieLens as GroupLens ships it: a folder or a .zip, in any of the three file layouts.

Layouts (detected from the file names present):

* ``ml-100k``: ``u.data`` (tab separated ratings), ``u.item`` (``|`` separated, ISO-8859-1,
  19 genre flags), ``u.user`` (demographics).
* ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::`` separated, ISO-8859-1).
* CSV (ml-latest-small, ml-latest, ml-20m, ml-25m): ``ratings.csv`` and ``movies.csv`` (UTF-8).

The result has exactly the values the tfds ``movielens/*-ratings`` builder produces from the same
archive (see ``tensorflow_datasets/structured/movielens_parsing.py``): ids as the strings in the
files, genres mapped to the tfds ClassLabel indices (``Children's`` becomes ``Children``), ages
bucketized and occupations merged the way tfds does. The large ratings file is parsed with the
pandas C parser; only the small movie and user tables are parsed line by line, mirroring tfds.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

import numpy as np

from tfrs_movies.data.schema import GENRES, MAX_RATING, MIN_RATING, NUM_GENRES, OCCUPATIONS, Ratings
from tfrs_movies.errors import DataError

logger = logging.getLogger(__name__)

# Required files per layout, in the order they are named in messages.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "ml-100k": ("u.data", "u.item", "u.user"),
    "ml-1m": ("ratings.dat", "movies.dat", "users.dat"),
    "csv": ("ratings.csv", "movies.csv"),
}
_LAYOUT_DESCRIPTIONS = {
    "ml-100k": "ml-100k (u.data, u.item, u.user)",
    "ml-1m": "ml-1m (ratings.dat, movies.dat, users.dat)",
    "csv": "ml-latest-small / ml-latest / ml-20m / ml-25m (ratings.csv, movies.csv)",
}

_GENRE_INDEX = {name: index for index, name in enumerate(GENRES)}
_OCCUPATION_INDEX = {name: index for index, name in enumerate(OCCUPATIONS)}

# ml-100k genre flag columns of u.item, in file order (tfds' list; "Children's" -> "Children").
_GENRES_100K = (
    "Unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# tfds' bucketization of ml-100k raw ages: the largest threshold <= age, else 1.
_AGE_THRESHOLDS_100K = (18, 25, 35, 45, 50, 56)
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
# ml-1m users.dat occupation codes 0..20, as tfds lists them.
_OCCUPATIONS_1M = (
    "other/not specified",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
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

# What reading a damaged zip member can raise (zlib.error is not an OSError).
_READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error)

_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", "|": "'|'", "::": "'::'", ";": "';'"}


class _Files:
    """The files of one MovieLens copy, in a folder or a zip (possibly one folder deep).

    Args:
        path: the folder or .zip the user named.
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if not os.path.exists(self.path):
            raise DataError(
                "no such file or folder; expected a MovieLens folder or .zip "
                "(e.g. ml-100k/ or ml-latest-small.zip)",
                path=self.path,
            )
        if os.path.isdir(self.path):
            self._entries = self._folder_entries()
        else:
            try:
                self._zip = zipfile.ZipFile(self.path)
                # Reading the central directory does not check data; testzip would read it all.
                names = self._zip.namelist()
            except _READ_ERRORS as error:
                raise DataError(
                    f"not a readable zip archive ({error}); expected a MovieLens folder or the "
                    "GroupLens .zip, e.g. ml-latest-small.zip",
                    path=self.path,
                ) from error
            self._entries = self._zip_entries(names)

    def _folder_entries(self) -> dict[str, set[str]]:
        # The folder itself, plus its direct subfolders (a parent folder of an extracted zip).
        entries = {"": {n for n in os.listdir(self.path) if os.path.isfile(self._join("", n))}}
        for child in sorted(os.listdir(self.path)):
            if os.path.isdir(os.path.join(self.path, child)):
                entries[child + "/"] = {
                    n
                    for n in os.listdir(os.path.join(self.path, child))
                    if os.path.isfile(os.path.join(self.path, child, n))
                }
        return entries

    @staticmethod
    def _zip_entries(names: list[str]) -> dict[str, set[str]]:
        entries: dict[str, set[str]] = {"": set()}
        for name in names:
            if name.endswith("/"):
                continue
            folder, _, base = name.rpartition("/")
            if folder.count("/") == 0:  # top level or one folder deep, as GroupLens zips are
                entries.setdefault(folder + "/" if folder else "", set()).add(base)
        return entries

    def _join(self, prefix: str, name: str) -> str:
        return os.path.join(self.path, prefix, name)

    def detect_layout(self) -> str:
        """Picks the layout whose files are present and remembers where they are.

        Returns:
            one of the keys of :data:`LAYOUTS`.

        Raises:
            DataError: no layout's files are all there; lists what each layout needs.
        """
        partial: list[str] = []
        for prefix in sorted(self._entries, key=lambda p: (p != "", p)):
            present = self._entries[prefix]
            for layout, required in LAYOUTS.items():
                if all(name in present for name in required):
                    self.prefix = prefix
                    return layout
                if required[0] in present:
                    missing = [n for n in required if n not in present]
                    where = self.display(required[0], prefix)
                    partial.append(
                        f"found {where} but not {', '.join(missing)} "
                        f"(a {_LAYOUT_DESCRIPTIONS[layout]} copy needs all of them)"
                    )
        if partial:
            raise DataError("missing file: " + "; ".join(partial), path=self.path)
        expected = "; ".join(_LAYOUT_DESCRIPTIONS[layout] for layout in LAYOUTS)
        raise DataError(
            f"no MovieLens files found; expected one of: {expected}",
            path=self.path,
        )

    def display(self, name: str, prefix: str | None = None) -> str:
        """How a member file is named in messages, e.g. ``x.zip!ml-latest-small/ratings.csv``."""
        prefix = self.prefix if prefix is None else prefix
        if self._zip is not None:
            return f"{self.path}!{prefix}{name}"
        return self._join(prefix, name)

    def local_path(self, name: str) -> str | None:
        """A real file path when the copy is a folder (pandas reads those fastest)."""
        return None if self._zip is not None else self._join(self.prefix, name)

    def open(self, name: str) -> IO[bytes]:
        """Opens a member for binary reading.

        Raises:
            DataError: the member cannot be read (corrupt zip entry, permissions).
        """
        try:
            if self._zip is not None:
                return self._zip.open(self.prefix + name)
            return open(self._join(self.prefix, name), "rb")
        except (*_READ_ERRORS, KeyError) as error:
            problem = "the archive looks corrupt" if self._zip is not None else "cannot read file"
            raise DataError(f"{problem} ({error})", path=self.display(name)) from error

    def read_bytes(self, name: str) -> bytes:
        """Reads a whole member; corrupt zip data becomes a DataError."""
        with self.open(name) as stream:
            try:
                return stream.read()
            except (*_READ_ERRORS, ValueError) as error:
                raise DataError(
                    f"cannot read file, the archive looks corrupt ({error})",
                    path=self.display(name),
                ) from error

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def read_movielens(path: str, *, progress: bool = False) -> Ratings:
    """Reads a MovieLens folder or zip into the canonical columnar form.

    Args:
        path: folder or ``.zip`` holding one of the layouts in :data:`LAYOUTS` (at the top or one
            folder deep, as GroupLens zips are).
        progress: log a line per file read (at INFO level).

    Returns:
        Ratings with the movie table of the movies file (M rows, in file order), the user table
        (U rows: ``u.user``/``users.dat`` order, or the sorted distinct ``userId`` values of
        ``ratings.csv``), and R ratings in file order minus dropped duplicates.

    Raises:
        DataError: missing or malformed file; the message names the file and line.
    """
    files = _Files(path)
    try:
        layout = files.detect_layout()
        name = _dataset_name(files)
        if layout == "ml-100k":
            return _read_100k(files, name, progress)
        if layout == "ml-1m":
            return _read_1m(files, name, progress)
        return _read_csv_family(files, name, progress)
    finally:
        files.close()


def _dataset_name(files: _Files) -> str:
    base = os.path.basename(os.path.normpath(files.path))
    if files.prefix:
        base = files.prefix.rstrip("/")
    return base[:-4] if base.lower().endswith(".zip") else base


# ----------------------------------------------------------------------------- line-based tables


def _decoded_lines(files: _Files, name: str, encoding: str) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, stripped text) of non-blank lines, like tfds reads them."""
    data = files.read_bytes(name)
    if not data.strip():
        raise DataError("file is empty; expected one record per line", path=files.display(name))
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = codecs.decode(raw, encoding=encoding).strip()
        except UnicodeDecodeError as error:
            raise DataError(
                f"text is not valid {encoding} ({error.reason})",
                path=files.display(name),
                line=number,
            ) from error
        if line:
            yield number, line


def _split_fields(
    line: str, sep: str, expected: int, display: str, number: int, what: str, at_least=False
) -> list[str]:
    fields = line.split(sep)
    if len(fields) == expected or (at_least and len(fields) > expected):
        return fields
    guess = _guess_separator(line, expected)
    hint = f"; the line looks {guess}-separated" if guess else ""
    sep_name = _SEPARATOR_NAMES.get(sep, repr(sep))
    raise DataError(
        f"expected {expected} {sep_name}-separated fields ({what}), found {len(fields)}{hint}",
        path=display,
        line=number,
    )


def _guess_separator(line: str, expected: int) -> str | None:
    for sep, sep_name in _SEPARATOR_NAMES.items():
        if len(line.split(sep)) == expected:
            return sep_name
    return None


def _genre_row(names: list[str], display: str, number: int) -> np.ndarray:
    hot = np.zeros(NUM_GENRES, dtype=bool)
    for genre in names:
        # The ml-1m spelling; tfds maps it onto the shared "Children" label.
        genre = "Children" if genre == "Children's" else genre
        index = _GENRE_INDEX.get(genre)
        if index is None:
            raise DataError(
                f"unknown genre {genre!r}; expected '|'-separated names from: {', '.join(GENRES)}",
                path=display,
                line=number,
            )
        hot[index] = True
    return hot


class _MovieTable:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.titles: list[str] = []
        self.genres: list[np.ndarray] = []
        self._seen: dict[str, int] = {}

    def add(self, movie_id: str, title: str, genres: np.ndarray, display: str, number: int):
        if movie_id in self._seen:
            raise DataError(
                f"movie id {movie_id!r} appears twice (first on line {self._seen[movie_id]}); "
                "expected one line per movie",
                path=display,
                line=number,
            )
        self._seen[movie_id] = number
        self.ids.append(movie_id)
        self.titles.append(title)
        self.genres.append(genres)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.array(self.ids, dtype=str)
        # Object dtype: fixed-width unicode would make a 25M-row title column tens of GB.
        titles = np.empty(len(self.titles), dtype=object)
        titles[:] = self.titles
        genres = np.stack(self.genres) if self.genres else np.zeros((0, NUM_GENRES), dtype=bool)
        return ids, titles, genres


def _read_100k_movies(files: _Files) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    display = files.display("u.item")
    table = _MovieTable()
    what = "movie id | title | release date | video release date | IMDb URL | 19 genre flags"
    for number, line in _decoded_lines(files, "u.item", "ISO-8859-1"):
        fields = _split_fields(line, "|", 5 + len(_GENRES_100K), display, number, what)
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(
                f"genre flags must be 0 or 1, found {'|'.join(flags)}", path=display, line=number
            )
        genres = [_GENRES_100K[i] for i, flag in enumerate(flags) if flag == "1"]
        table.add(fields[0], fields[1], _genre_row(genres, display, number), display, number)
    return table.arrays()


def _read_1m_movies(files: _Files) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    display = files.display("movies.dat")
    table = _MovieTable()
    for number, line in _decoded_lines(files, "movies.dat", "ISO-8859-1"):
        movie_id, title, genres = _split_fields(
            line, "::", 3, display, number, "movie id :: title :: genres"
        )
        table.add(movie_id, title, _genre_row(genres.split("|"), display, number), display, number)
    return table.arrays()


def _read_csv_movies(files: _Files) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    display = files.display("movies.csv")
    data = files.read_bytes("movies.csv")
    if not data.strip():
        raise DataError(
            "file is empty; expected a header movieId,title,genres and one line per movie",
            path=display,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"text is not valid UTF-8 ({error.reason})", path=display, line=line
        ) from error
    # The csv module, as tfds uses, so quoted titles with commas parse identically.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_header(reader.fieldnames or [], ("movieId", "title", "genres"), display)
    table = _MovieTable()
    for row in reader:
        number = reader.line_num
        if row["genres"] is None or row["title"] is None:
            raise DataError(
                "expected 3 comma-separated fields (movieId,title,genres)",
                path=display,
                line=number,
            )
        genres = _genre_row(row["genres"].split("|"), display, number)
        table.add(row["movieId"], row["title"], genres, display, number)
    return table.arrays()


def _check_header(columns: list[str], required: tuple[str, ...], display: str) -> None:
    missing = [c for c in required if c not in columns]
    if not missing:
        return
    header = ",".join(columns)
    guess = _guess_separator(header, len(required)) if len(columns) == 1 else None
    hint = f"; the header looks {guess}-separated" if guess and guess != "comma" else ""
    raise DataError(
        f"missing column(s) {', '.join(missing)} in header {header!r}; expected a comma-separated "
        f"header with {', '.join(required)}{hint}",
        path=display,
        line=1,
    )


def _read_100k_users(files: _Files) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    display = files.display("u.user")
    ids, ages, genders, occupations, zips = [], [], [], [], []
    what = "user id | age | gender | occupation | zip code"
    for number, line in _decoded_lines(files, "u.user", "ISO-8859-1"):
        user_id, age_text, gender, occupation, zip_code = _split_fields(
            line, "|", 5, display, number, what
        )
        try:
            raw_age = int(age_text)
        except ValueError:
            raise DataError(
                f"age {age_text!r} is not an integer", path=display, line=number
            ) from None
        bucket = 1
        for threshold in _AGE_THRESHOLDS_100K:
            if raw_age >= threshold:
                bucket = threshold
            else:
                break
        label = _OCCUPATIONS_100K.get(occupation)
        if label is None:
            raise DataError(
                f"unknown occupation {occupation!r}; expected one of "
                f"{', '.join(sorted(_OCCUPATIONS_100K))}",
                path=display,
                line=number,
            )
        ids.append(user_id)
        ages.append(bucket)
        genders.append(gender == "M")
        occupations.append(_OCCUPATION_INDEX[label])
        zips.append(zip_code)
    return _user_arrays(ids, ages, genders, occupations, zips, display)


def _read_1m_users(files: _Files) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    display = files.display("users.dat")
    ids, ages, genders, occupations, zips = [], [], [], [], []
    what = "user id :: gender :: age :: occupation :: zip code"
    for number, line in _decoded_lines(files, "users.dat", "ISO-8859-1"):
        user_id, gender, age, occupation_code, zip_code = _split_fields(
            line, "::", 5, display, number, what
        )
        try:
            # ml-1m ages are already bucketized (1, 18, 25, ...); tfds keeps them as floats.
            age_value = float(age)
            occupation = _OCCUPATIONS_1M[int(occupation_code)]
        except (ValueError, IndexError):
            raise DataError(
                f"age {age!r} or occupation code {occupation_code!r} is invalid; expected a "
                "number and a code 0-20",
                path=display,
                line=number,
            ) from None
        if occupation in ("K-12 student", "college/grad student"):
            occupation = "student"
        ids.append(user_id)
        ages.append(age_value)
        genders.append(gender == "M")
        occupations.append(_OCCUPATION_INDEX[occupation])
        zips.append(zip_code)
    return _user_arrays(ids, ages, genders, occupations, zips, display)


def _user_arrays(ids, ages, genders, occupations, zips, display):
    if len(set(ids)) != len(ids):
        raise DataError("a user id appears twice; expected one line per user", path=display)
    features = {
        "bucketized_user_age": np.array(ages, dtype=np.float32),
        "user_gender": np.array(genders, dtype=bool),
        "user_occupation_label": np.array(occupations, dtype=np.int64),
        "user_zip_code": np.array(zips, dtype=str),
    }
    return np.array(ids, dtype=str), features


# ----------------------------------------------------------------------------- ratings (pandas)


_RATING_COLUMNS = ("user", "movie", "rating", "timestamp")


def _read_ratings(
    files: _Files,
    name: str,
    *,
    sep: str,
    header: tuple[str, ...] | None,
    what: str,
    encoding: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parses a ratings file with the pandas C parser.

    Args:
        files: where the file is.
        name: member name, e.g. ``u.data``.
        sep: field separator; ``::`` is rewritten to a tab first (the C parser needs one char).
        header: the column names of a header line (user, movie, rating, timestamp order), or
            None for a file without one.
        what: the fields, for messages.
        encoding: text encoding.

    Returns:
        user ids (R,) int64, movie ids (R,) int64, ratings (R,) float32, timestamps (R,) int64.
    """
    import pandas as pd  # deferred: pandas import costs ~0.3 s and is only needed here

    display = files.display(name)
    first_line_offset = 2 if header else 1
    local = files.local_path(name)
    if sep == "::":
        data = files.read_bytes(name)
        tab = data.find(b"\t")
        if tab >= 0:
            # A tab would silently pass as a field separator once '::' becomes one.
            raise DataError(
                f"found a tab; expected {what}",
                path=files.display(name),
                line=data[:tab].count(b"\n") + 1,
            )
        data = data.replace(b"::", b"\t")
        first = data[: data.find(b"\n")] if b"\n" in data else data
        source_factory = lambda: io.BytesIO(data)  # noqa: E731
    elif local is not None:
        with open(local, "rb") as stream:
            first = stream.readline()
        source_factory = lambda: local  # noqa: E731
    else:
        # Stream zip members: the 25M-row ratings.csv is 650 MB uncompressed.
        with files.open(name) as stream:
            first = _read_first_line(stream, files.display(name))
        source_factory = lambda: files.open(name)  # noqa: E731
    parse_sep = "\t" if sep == "::" else sep
    first_text = first.decode(encoding, errors="replace").strip()
    if not first_text:
        raise DataError(
            f"file is empty (or its first line is blank); expected {what}",
            path=display,
            line=1 if first else None,
        )
    if header:
        columns = [c.strip() for c in first_text.split(parse_sep)]
        _check_header(columns, header, display)
        usecols = list(header)
        names = None
    else:
        original_first = first_text.replace("\t", "::") if sep == "::" else first_text
        _split_fields(original_first, sep, 4, display, 1, what)
        usecols = None
        names = list(header or _RATING_COLUMNS)
    keys = list(header or _RATING_COLUMNS)
    dtypes = dict(zip(keys, ("int64", "int64", "float64", "int64"), strict=True))
    read_kwargs = dict(
        sep=parse_sep,
        header=0 if header else None,
        names=names,
        usecols=usecols,
        encoding=encoding,
        engine="c",
        quoting=csv.QUOTE_NONE if not header else csv.QUOTE_MINIMAL,
    )
    try:
        frame = pd.read_csv(source_factory(), dtype=dtypes, **read_kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"file is empty; expected {what}", path=display) from None
    except pd.errors.ParserError as error:
        match = re.search(r"line (\d+), saw (\d+)", str(error))
        line = int(match.group(1)) if match else None
        raise DataError(
            f"wrong number of fields ({match.group(2) if match else '?'}); expected {what}",
            path=display,
            line=line,
        ) from None
    except _READ_ERRORS as error:
        raise DataError(
            f"cannot read file, the archive looks corrupt ({error})", path=display
        ) from None
    except (ValueError, TypeError, OverflowError) as error:
        # Slow path, only on bad input: re-read as text to find the offending line.
        frame = pd.read_csv(source_factory(), dtype=str, keep_default_na=False, **read_kwargs)
        _raise_first_bad_value(frame, keys, display, first_line_offset, what)
        raise DataError(f"cannot parse ratings ({error}); expected {what}", path=display) from None
    if len(frame) == 0:
        raise DataError(f"file has no ratings; expected {what}", path=display)
    users = frame[keys[0]].to_numpy(np.int64)
    movies = frame[keys[1]].to_numpy(np.int64)
    rating = frame[keys[2]].to_numpy(np.float64)
    timestamp = frame[keys[3]].to_numpy(np.int64)
    bad = ~((rating >= MIN_RATING) & (rating <= MAX_RATING))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"rating {rating[row]:g} is out of scale; expected a value from {MIN_RATING:g} to "
            f"{MAX_RATING:g}",
            path=display,
            line=row + first_line_offset,
        )
    return users, movies, rating.astype(np.float32), timestamp


def _read_first_line(stream: IO[bytes], display: str) -> bytes:
    try:
        return stream.readline()
    except _READ_ERRORS as error:
        raise DataError(
            f"cannot read file, the archive looks corrupt ({error})", path=display
        ) from None


def _raise_first_bad_value(frame, keys, display, offset, what) -> None:
    import pandas as pd

    labels = ("user id", "movie id", "rating", "timestamp")
    first_bad: tuple[int, str, str] | None = None
    for key, label in zip(keys, labels, strict=True):
        text = frame[key].astype(str)
        values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if label != "rating":
            bad |= np.nan_to_num(values) != np.round(np.nan_to_num(values))
        if bad.any():
            row = int(np.argmax(bad))
            if first_bad is None or row < first_bad[0]:
                first_bad = (row, label, text.iloc[row])
    if first_bad is not None:
        row, label, value = first_bad
        kind = "a number" if label == "rating" else "an integer"
        shown = repr(value) if value else "an empty value"
        raise DataError(
            f"{label} {shown} is not {kind}; expected {what}",
            path=display,
            line=row + offset,
        )


def _join(
    keys: np.ndarray,
    table_ids: np.ndarray,
    display: str,
    offset: int,
    label: str,
    table_file: str,
) -> np.ndarray:
    """Maps integer ids of each rating to rows of a string id table.

    Returns:
        (R,) int32 rows of ``table_ids``.

    Raises:
        DataError: a rating references an id that is not in the table (with its line).
    """
    try:
        table_keys = table_ids.astype(np.int64)
    except ValueError:
        # Non-numeric ids in the table: join on strings instead (slower, still vectorized).
        table_keys = None
    if table_keys is None:
        table_keys, keys = table_ids, keys.astype(str)
    order = np.argsort(table_keys, kind="stable")
    sorted_keys = table_keys[order]
    position = np.searchsorted(sorted_keys, keys)
    position = np.minimum(position, len(sorted_keys) - 1) if len(sorted_keys) else position
    found = sorted_keys[position] == keys if len(sorted_keys) else np.zeros(len(keys), dtype=bool)
    if not found.all():
        row = int(np.argmin(found))
        raise DataError(
            f"rating references unknown {label} {keys[row]}; expected every {label} to be "
            f"listed in {table_file}",
            path=display,
            line=row + offset,
        )
    return order[position].astype(np.int32)


def finish_ratings(
    name: str,
    *,
    movie_ids: np.ndarray,
    movie_titles: np.ndarray,
    movie_genres: np.ndarray,
    user_ids: np.ndarray,
    user_features: dict[str, np.ndarray],
    user_index: np.ndarray,
    movie_index: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray,
    where: str,
) -> Ratings:
    """Drops repeated (user, movie) ratings, keeping the latest, and builds the Ratings.

    Args:
        name: dataset name for :attr:`Ratings.name`.
        where: the source named in the warning about dropped duplicates.
        (others): the :class:`Ratings` fields; index arrays (R,).

    Returns:
        Ratings whose (user, movie) pairs are unique; the kept ratings stay in input order.
    """
    user_index = np.asarray(user_index, dtype=np.int32)
    movie_index = np.asarray(movie_index, dtype=np.int32)
    keep, dropped = latest_unique(user_index, movie_index, timestamp, len(movie_ids))
    if dropped:
        logger.warning(
            "%s: dropped %d duplicate (user, movie) ratings, keeping the latest by timestamp",
            where,
            dropped,
        )
        user_index, movie_index = user_index[keep], movie_index[keep]
        rating, timestamp = rating[keep], timestamp[keep]
    return Ratings(
        name=name,
        movie_ids=movie_ids,
        movie_titles=movie_titles,
        movie_genres=movie_genres,
        user_ids=user_ids,
        user_features=user_features,
        user_index=user_index,
        movie_index=movie_index,
        rating=np.asarray(rating, dtype=np.float32),
        timestamp=np.asarray(timestamp, dtype=np.int64),
        num_duplicates_dropped=int(dropped),
    )


def latest_unique(
    user_index: np.ndarray, movie_index: np.ndarray, timestamp: np.ndarray, num_movies: int
) -> tuple[np.ndarray | None, int]:
    """Finds the ratings to keep so each (user, movie) pair appears once.

    Args:
        user_index: (R,) int.
        movie_index: (R,) int.
        timestamp: (R,) int64.
        num_movies: M, to form one int64 key per pair.

    Returns:
        ``(keep, dropped)``: sorted (K,) int64 rows to keep (None when nothing is dropped) and
        R - K. Among repeats the latest timestamp wins; on equal timestamps the later row.
    """
    key = user_index.astype(np.int64) * max(num_movies, 1) + movie_index
    # Cheap check first: one sort, no argsort, on the common duplicate-free data.
    sorted_key = np.sort(key)
    if not (sorted_key[1:] == sorted_key[:-1]).any():
        return None, 0
    rows = np.arange(len(key))
    order = np.lexsort((rows, timestamp, key))
    last_of_group = np.ones(len(key), dtype=bool)
    last_of_group[:-1] = key[order][1:] != key[order][:-1]
    keep = np.sort(order[last_of_group])
    return keep, int(len(key) - len(keep))


# ----------------------------------------------------------------------------- layouts


def _read_100k(files: _Files, name: str, progress: bool) -> Ratings:
    if progress:
        logger.info("reading %s", files.display("u.data"))
    movie_ids, titles, genres = _read_100k_movies(files)
    user_ids, features = _read_100k_users(files)
    what = "user id <tab> item id <tab> rating <tab> timestamp"
    users, movies, rating, timestamp = _read_ratings(
        files, "u.data", sep="\t", header=None, what=what, encoding="ISO-8859-1"
    )
    display = files.display("u.data")
    return finish_ratings(
        name,
        movie_ids=movie_ids,
        movie_titles=titles,
        movie_genres=genres,
        user_ids=user_ids,
        user_features=features,
        user_index=_join(users, user_ids, display, 1, "user id", "u.user"),
        movie_index=_join(movies, movie_ids, display, 1, "movie id", "u.item"),
        rating=rating,
        timestamp=timestamp,
        where=display,
    )


def _read_1m(files: _Files, name: str, progress: bool) -> Ratings:
    if progress:
        logger.info("reading %s", files.display("ratings.dat"))
    movie_ids, titles, genres = _read_1m_movies(files)
    user_ids, features = _read_1m_users(files)
    what = "user id :: movie id :: rating :: timestamp"
    users, movies, rating, timestamp = _read_ratings(
        files, "ratings.dat", sep="::", header=None, what=what, encoding="ISO-8859-1"
    )
    display = files.display("ratings.dat")
    return finish_ratings(
        name,
        movie_ids=movie_ids,
        movie_titles=titles,
        movie_genres=genres,
        user_ids=user_ids,
        user_features=features,
        user_index=_join(users, user_ids, display, 1, "user id", "users.dat"),
        movie_index=_join(movies, movie_ids, display, 1, "movie id", "movies.dat"),
        rating=rating,
        timestamp=timestamp,
        where=display,
    )


def _read_csv_family(files: _Files, name: str, progress: bool) -> Ratings:
    if progress:
        logger.info("reading %s", files.display("ratings.csv"))
    movie_ids, titles, genres = _read_csv_movies(files)
    header = ("userId", "movieId", "rating", "timestamp")
    what = "comma-separated userId,movieId,rating,timestamp"
    users, movies, rating, timestamp = _read_ratings(
        files, "ratings.csv", sep=",", header=header, what=what, encoding="utf-8"
    )
    display = files.display("ratings.csv")
    movie_index = _join(movies, movie_ids, display, 2, "movie id", "movies.csv")
    # The CSV family has no user file: the users are the distinct ids that rated, sorted.
    unique_users, user_index = np.unique(users, return_inverse=True)
    return finish_ratings(
        name,
        movie_ids=movie_ids,
        movie_titles=titles,
        movie_genres=genres,
        user_ids=unique_users.astype(str),
        user_features={},
        user_index=user_index.astype(np.int32),
        movie_index=movie_index,
        rating=rating,
        timestamp=timestamp,
        where=display,
    )
