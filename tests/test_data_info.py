"""describe / format_description and `tfrs-movies data info`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tfrs_movies import cli
from tfrs_movies.data import describe, format_description, load_source


def test_describe_tiny(tiny_csv: Path):
    info = describe(load_source(str(tiny_csv)))
    assert (info["users"], info["movies"], info["ratings"]) == (2, 3, 3)
    assert info["rating_histogram"] == {"0.5": 1, "4.0": 1, "4.5": 1}
    assert info["ratings_per_movie"] == {"min": 0, "median": 1.0, "max": 2}
    assert info["ratings_per_user"] == {"min": 1, "median": 1.5, "max": 2}
    assert abs(info["sparsity"] - 0.5) < 1e-9
    assert info["first_date"] == "2000-07-30" and info["duplicates_dropped"] == 0
    json.dumps(info)
    text = format_description(info)
    assert "ratings:" in text and "duplicates dropped:" in text


def test_data_info_ml100k(ml100k_dir: Path, capsys):
    assert cli.main(["data", "info", str(ml100k_dir)]) == 0
    out = capsys.readouterr().out
    assert "943" in out and "1,682" in out and "100,000" in out


def test_data_info_json(tiny_100k: Path, capsys):
    assert cli.main(["data", "info", str(tiny_100k), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["users"] == 3 and info["ratings"] == 4
    assert "user_occupation_label" in info["demographics"]


def test_module_entry_point(tiny_csv: Path):
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "tfrs_movies.cli", "data", "info", str(tiny_csv)],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "ratings:" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tfrs_movies.cli", "data", "info", str(tiny_csv / "nope.zip")],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
