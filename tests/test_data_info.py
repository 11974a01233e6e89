"""describe / format_description and `tfrs-movies data info`."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
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


def test_console_entry_freezes_what_is_alive_and_returns_main_s_status(tiny_csv: Path):
    # console_main is what a process that ends with the command runs: main's status, then the
    # objects still alive frozen out of the garbage collector (the exit's last collection
    # walked them all: about 1 s after a training run).
    code = (
        "import gc, sys\n"
        "from tfrs_movies.cli import console_main\n"
        "frozen = gc.get_freeze_count()\n"
        f"status = console_main(['data', 'info', {str(tiny_csv)!r}])\n"
        "print('STATUS', status, frozen, gc.get_freeze_count())\n"
        f"status = console_main(['data', 'info', {str(tiny_csv / 'nope.zip')!r}])\n"
        "print('STATUS', status)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    statuses = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("STATUS")]
    assert statuses[1] == ["2"]  # a reported error: main's status, unchanged
    status, before, after = map(int, statuses[0])
    assert status == 0 and before == 0 and after > 1000
    # The installed console script runs it.
    scripts = entry_points(group="console_scripts", name="tfrs-movies")
    assert [script.value for script in scripts] == ["tfrs_movies.cli:console_main"]
