"""Bad input becomes a DataError naming the file, the line and what was expected, and the CLI
prints it as one stderr line with a non-zero exit status."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from conftest import (
    MOVIES_CSV,
    RATINGS_CSV,
    RATINGS_DAT,
    U_DATA,
    U_ITEM,
    U_USER,
    write_files,
)

from tfrs_movies import cli
from tfrs_movies.data import load_source
from tfrs_movies.errors import DataError


def _csv(tmp_path: Path, ratings: str = RATINGS_CSV, movies: str = MOVIES_CSV) -> Path:
    return write_files(tmp_path / "ml-csv", {"ratings.csv": ratings, "movies.csv": movies})


def _100k(tmp_path: Path, data: str = U_DATA, item: str = U_ITEM) -> Path:
    return write_files(
        tmp_path / "ml-100k",
        {"u.data": data, "u.item": item, "u.user": U_USER},
        encoding="ISO-8859-1",
    )


def _1m(tmp_path: Path, ratings: str) -> Path:
    from conftest import MOVIES_DAT, USERS_DAT

    return write_files(
        tmp_path / "ml-1m",
        {"ratings.dat": ratings, "movies.dat": MOVIES_DAT, "users.dat": USERS_DAT},
    )


def _missing_file(tmp_path: Path) -> Path:
    folder = _100k(tmp_path)
    (folder / "u.item").unlink()
    return folder


def _corrupt_zip(tmp_path: Path) -> Path:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    return path


def _truncated_zip(tmp_path: Path) -> Path:
    folder = _csv(tmp_path, ratings=RATINGS_CSV * 1 + "".join(f"1,1,4.0,{i}\n" for i in range(3)))
    path = tmp_path / "cut.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in folder.iterdir():
            zf.write(file, "ml/" + file.name)
    data = bytearray(path.read_bytes())
    # Flip bytes inside the compressed data of the first member: the CRC check must fail.
    for offset in range(48, 64):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


# (case id, builder, substrings the message must contain)
CASES = [
    ("missing_file", _missing_file, ["u.item", "missing file"]),
    (
        "no_layout",
        lambda p: write_files(p / "empty", {"notes.txt": "hi"}),
        ["u.data", "ratings.dat", "ratings.csv"],
    ),
    (
        "missing_column",
        lambda p: _csv(p, ratings="userId,movieId,score,timestamp\n1,1,4.0,1\n"),
        ["ratings.csv", "line 1", "rating"],
    ),
    (
        "non_numeric_rating",
        lambda p: _csv(p, ratings=RATINGS_CSV + "2,1,great,964982703\n"),
        ["ratings.csv", "line 5", "'great'", "not a number"],
    ),
    (
        "out_of_scale_rating",
        lambda p: _csv(p, ratings=RATINGS_CSV + "2,1,7.5,964982703\n"),
        ["ratings.csv", "line 5", "7.5", "out of scale", "0.5", "5"],
    ),
    (
        "zero_rating",
        lambda p: _100k(p, data=U_DATA + "2\t1\t0\t881250953\n"),
        ["u.data", "line 5", "out of scale"],
    ),
    ("empty_ratings", lambda p: _csv(p, ratings=""), ["ratings.csv", "empty"]),
    ("empty_u_data", lambda p: _100k(p, data=""), ["u.data", "empty"]),
    ("empty_movies", lambda p: _csv(p, movies=""), ["movies.csv", "empty"]),
    (
        "comma_separated_u_data",
        lambda p: _100k(p, data=U_DATA.replace("\t", ",")),
        ["u.data", "line 1", "tab", "comma"],
    ),
    (
        "ragged_u_data",
        lambda p: _100k(p, data=U_DATA + "2\t1\t4\t881250953\t99\n"),
        ["u.data", "line 5"],
    ),
    (
        "unknown_movie",
        lambda p: _csv(p, ratings=RATINGS_CSV + "2,999,4.0,964982703\n"),
        ["ratings.csv", "line 5", "unknown movie id 999", "movies.csv"],
    ),
    (
        "unknown_movie_100k",
        lambda p: _100k(p, data=U_DATA + "1\t42\t4\t881250953\n"),
        ["u.data", "line 5", "unknown movie id 42", "u.item"],
    ),
    (
        "unknown_user_100k",
        lambda p: _100k(p, data=U_DATA + "77\t1\t4\t881250953\n"),
        ["u.data", "line 5", "unknown user id 77", "u.user"],
    ),
    (
        "bad_1m_separator",
        lambda p: _1m(p, ratings=RATINGS_DAT + "2\t2\t4\t978301968\n"),
        ["ratings.dat", "line 4"],
    ),
    (
        "unknown_genre",
        lambda p: _csv(p, movies=MOVIES_CSV + "30,Odd (2000),Cooking\n"),
        ["movies.csv", "line 5", "Cooking"],
    ),
    (
        "short_u_item",
        lambda p: _100k(p, item=U_ITEM + "4|Short|x\n"),
        ["u.item", "line 4", "fields"],
    ),
    ("corrupt_zip", _corrupt_zip, ["broken.zip", "zip"]),
    ("corrupt_zip_member", _truncated_zip, ["cut.zip", "corrupt"]),
    ("no_such_path", lambda p: p / "nowhere", ["nowhere", "no such file"]),
]


@pytest.mark.parametrize(("builder", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_library_raises_data_error(tmp_path: Path, builder, expected):
    source = builder(tmp_path)
    with pytest.raises(DataError) as caught:
        load_source(str(source))
    message = str(caught.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message


@pytest.mark.parametrize(("builder", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_prints_one_line(tmp_path: Path, builder, expected, capsys):
    source = builder(tmp_path)
    status = cli.main(["data", "info", str(source)])
    captured = capsys.readouterr()
    assert status != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in captured.err
    assert expected[0] in lines[0]


def test_data_error_records_path_and_line(tmp_path: Path):
    source = _csv(tmp_path, ratings=RATINGS_CSV + "2,1,7.5,964982703\n")
    with pytest.raises(DataError) as caught:
        load_source(str(source))
    assert caught.value.line == 5
    assert caught.value.path.endswith("ratings.csv")


@pytest.mark.parametrize(
    "source",
    ["synthetic:users=abc", "synthetic:colour=3", "tfds:movielens/2k-ratings", "  "],
)
def test_bad_source_strings(source: str, capsys):
    with pytest.raises(DataError):
        load_source(source)
    assert cli.main(["data", "info", source]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_keyboard_interrupt(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("tfrs_movies.data.load_source", interrupted)
    assert cli.main(["data", "info", "synthetic"]) == 130
    assert "Traceback" not in capsys.readouterr().err
