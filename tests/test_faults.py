"""Fault injection: every failure that was once found by trying tfrs_movies as a new user (and
an attacker) would, reproduced so that none comes back (issue 16).

Run alone with ``pytest -m faults``. Each section belongs to one part of the package.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest

from tests.conftest import (
    MOVIES_CSV,
    MOVIES_DAT,
    RATINGS_CSV,
    RATINGS_DAT,
    REPO_ROOT,
    TINY_OVERRIDES,
    U_DATA,
    U_ITEM,
    U_USER,
    USERS_DAT,
)
from tfrs_movies import cli, rundir
from tfrs_movies.config import load_config
from tfrs_movies.data import load_source
from tfrs_movies.errors import ArtifactError, ConfigError, DataError, TfrsMoviesError
from tfrs_movies.recommend import Recommender
from tfrs_movies.serving import create_app
from tfrs_movies.train import run as train_run
from tfrs_movies.train import train_and_evaluate

pytestmark = pytest.mark.faults

# --- run directories: --overwrite, failed starts, odd workdirs, manifests (rundir/train) ---


def _fake_run(folder: Path) -> Path:
    """A folder that counts as a run (a manifest with a format version), for workdir checks."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, "files": {}}))
    return folder


def _snapshot(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize(("resume", "overwrite"), [(False, False), (False, True), (True, False)])
def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path, resume, overwrite):
    """--overwrite once deleted any folder given as --workdir, e.g. one holding a thesis."""
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    with pytest.raises(ArtifactError, match=r"not a tfrs_movies run.*chapter1\.tex"):
        rundir.check_workdir(folder, resume=resume, overwrite=overwrite)
    assert (folder / "chapter1.tex").read_text() == "precious"


def test_training_with_overwrite_into_a_non_run_stops_before_any_work(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    config = load_config(None, TINY_OVERRIDES)
    with pytest.raises(ArtifactError, match="cat.jpg"):
        train_and_evaluate(config, folder, overwrite=True, log=lambda message: None)
    assert _snapshot(tmp_path) == ["photos", "photos/cat.jpg"]


ODD_WORKDIRS = {
    "current folder": ".",
    "parent folder": "..",
    "root": "/",
    "empty string": "",
    "a file": "notes.txt",
    "inside a run": "old-run/vocab",
    "inside an interrupted run": "crashed.partial/inner",
    "a .partial name": "fresh.partial",
    "an unwritable place": "/proc/tfrs-movies-run",
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("workdir", ODD_WORKDIRS.values(), ids=ODD_WORKDIRS.keys())
def test_any_workdir_string_gives_a_run_or_one_error(tmp_path, monkeypatch, workdir, overwrite):
    """`--workdir .` was a ValueError traceback; `--workdir .. --overwrite` trained fully, then
    died with EBUSY; a path inside a run was accepted."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("notes")
    _fake_run(cwd / "old-run")
    (cwd / "crashed.partial").mkdir()
    (cwd / "crashed.partial" / "config.json").write_text("{}")
    monkeypatch.chdir(cwd)
    before = _snapshot(tmp_path)
    with pytest.raises(TfrsMoviesError):
        rundir.check_workdir(workdir, resume=False, overwrite=overwrite)
    assert _snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_an_unwritable_parent_folder_is_one_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ArtifactError, match="cannot write a run in"):
            rundir.check_workdir(locked / "run", resume=False, overwrite=False)
    finally:
        locked.chmod(0o700)


def test_the_cli_reports_a_bad_workdir_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = cli.main(["train", "--workdir", ".", *TINY_OVERRIDES])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: --workdir . is the current folder") and err.count("\n") == 1


def test_finalize_leaves_a_non_run_that_appeared_meanwhile_alone(tmp_path):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"train": {"seed": 0}}))
    intruder = tmp_path / "run"
    intruder.mkdir()
    (intruder / "data.csv").write_text("1,2\n")
    with pytest.raises(ArtifactError, match=r"data\.csv.*finished run is in"):
        rundir.finalize_run(partial, intruder, {}, overwrite=True)
    assert (intruder / "data.csv").read_text() == "1,2\n"
    assert rundir.is_run(partial)


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def _edit_manifest(run: Path, edit) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest["files"])
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_a_needed_file_missing_from_the_manifest_is_refused(run_copy):
    """Removing vocab/movies.csv from the manifest and truncating it passed `evaluate`, then
    `recommend` crashed with an IndexError."""
    _edit_manifest(run_copy, lambda files: files.pop("vocab/movies.csv"))
    (run_copy / "vocab" / "movies.csv").write_text("movie_id,title,genres,num_train_ratings\n")
    with pytest.raises(ArtifactError, match=r"does not list vocab/movies\.csv"):
        rundir.verify_run(run_copy)
    with pytest.raises(ArtifactError, match=r"vocab/movies\.csv"):
        Recommender.load(run_copy)


@pytest.mark.parametrize(
    "entry", ["../outside.txt", "/etc/hostname", "vocab/../../outside.txt", "", "vocab/link.txt"]
)
def test_manifest_entries_outside_the_run_are_refused(run_copy, entry):
    outside = run_copy.parent / "outside.txt"
    outside.write_text("not part of the run")
    (run_copy / "vocab" / "link.txt").symlink_to(outside)
    digest = rundir.layout.sha256(outside)
    _edit_manifest(run_copy, lambda files: files.update({entry: digest}))
    with pytest.raises(ArtifactError, match="not a file inside the run"):
        rundir.verify_run(run_copy)


def test_a_file_the_manifest_does_not_list_is_refused(run_copy):
    (run_copy / "ranking_model" / "variables" / "extra.data").write_bytes(b"\x00")
    with pytest.raises(ArtifactError, match=r"extra\.data is not listed"):
        rundir.verify_run(run_copy)


class _Crash(Exception):
    """The simulated crash of update_metrics (raised where the process would have died)."""


@pytest.mark.parametrize(
    "crash_at", ["writing pending metrics", "writing the manifest", "renaming pending metrics"]
)
def test_a_crash_inside_update_metrics_leaves_a_verified_run(run_copy, monkeypatch, crash_at):
    """metrics.json and then manifest.json were rewritten, each atomically: a crash between the
    two left a metrics.json that failed its checksum, so the run no longer loaded."""
    before = json.loads((run_copy / "metrics.json").read_text())
    after = {**before, "pipeline": {"recall@10": 0.5}}
    real_write_json, real_replace = rundir.manifest.write_json, os.replace

    def write_json(path, value):
        if (crash_at, Path(path).name) in (
            ("writing pending metrics", "metrics.json.pending"),
            ("writing the manifest", "manifest.json"),
        ):
            raise _Crash
        real_write_json(path, value)

    def replace(source, target):
        if crash_at == "renaming pending metrics" and Path(source).name == "metrics.json.pending":
            raise _Crash
        real_replace(source, target)

    monkeypatch.setattr(rundir.manifest, "write_json", write_json)
    monkeypatch.setattr(rundir.manifest.os, "replace", replace)
    with pytest.raises(_Crash):
        rundir.update_metrics(run_copy, {"pipeline": {"recall@10": 0.5}})
    monkeypatch.undo()

    rundir.verify_run(run_copy)  # completes an update that crashed after its commit point
    expected = after if crash_at == "renaming pending metrics" else before
    assert json.loads((run_copy / "metrics.json").read_text()) == expected
    assert rundir.update_metrics(run_copy, {"pipeline": {"recall@10": 0.5}}) == after
    rundir.verify_run(run_copy)
    assert not (run_copy / "metrics.json.pending").exists()


def test_an_update_committed_in_a_read_only_run_says_what_is_missing(run_copy, monkeypatch):
    real_replace = os.replace

    def replace(source, target):
        if Path(source).name == "metrics.json.pending":
            raise PermissionError(13, "Permission denied")
        real_replace(source, target)

    monkeypatch.setattr(rundir.manifest.os, "replace", replace)
    with pytest.raises(PermissionError):
        rundir.update_metrics(run_copy, {"pipeline": {}})
    with pytest.raises(ArtifactError, match=r"interrupted after it was committed.*Permission"):
        rundir.verify_run(run_copy)


def _quiet(message: str) -> None:
    pass


def test_a_start_with_unreadable_data_leaves_nothing_behind(tmp_path):
    """A bad --data left RUN.partial/config.json behind, which then blocked that workdir."""
    config = load_config(None, [*TINY_OVERRIDES, f"data.source={tmp_path / 'no-such-data'}"])
    with pytest.raises(DataError, match="no-such-data"):
        train_and_evaluate(config, tmp_path / "run", log=_quiet)
    assert _snapshot(tmp_path) == []


def test_a_start_that_fails_before_the_first_epoch_removes_its_partial(tmp_path, monkeypatch):
    def broken_model(prepared, config):
        raise ConfigError("the model cannot be built (on purpose)")

    monkeypatch.setattr(train_run, "build_model", broken_model)
    config = load_config(None, TINY_OVERRIDES)
    with pytest.raises(ConfigError, match="on purpose"):
        train_and_evaluate(config, tmp_path / "run", log=_quiet)
    assert _snapshot(tmp_path) == []


def test_an_interrupted_run_says_how_to_resume_and_how_to_start_over(tmp_path):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    config = load_config(None, TINY_OVERRIDES)
    with pytest.raises(ArtifactError, match=r"--resume to continue.*--overwrite to start over"):
        train_and_evaluate(config, tmp_path / "run", log=_quiet)
    assert _snapshot(tmp_path) == ["run.partial", "run.partial/config.json"]


@pytest.mark.parametrize("older_version", [True, False])
def test_resume_with_another_config_names_the_keys_that_differ(tmp_path, older_version):
    """A run started by an older version lacks the keys added since: named, not resumed."""
    config = load_config(None, TINY_OVERRIDES)
    saved = json.loads(json.dumps(config.to_dict()))
    if older_version:
        del saved["model"]["user_l2_count_power"]
    saved["train"]["early_stopping_patience"] = 2
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError) as refused:
        train_and_evaluate(config, tmp_path / "run", resume=True, log=_quiet)
    message = str(refused.value)
    expected = config.train.early_stopping_patience
    assert f"train.early_stopping_patience: 2 in the run, {expected} now" in message
    assert ("model.user_l2_count_power: absent in the run, 0.5 now" in message) == older_version
    assert ("added by a newer tfrs_movies" in message) == older_version
    assert "--overwrite" in message
    assert _snapshot(tmp_path) == ["run.partial", "run.partial/config.json"]


def test_resume_with_nothing_to_resume_is_an_error_not_a_fresh_start(tmp_path):
    config = load_config(None, TINY_OVERRIDES)
    with pytest.raises(ArtifactError, match="nothing to resume.*without --resume"):
        train_and_evaluate(config, tmp_path / "run", resume=True, log=_quiet)
    assert _snapshot(tmp_path) == []


# --- data files: BOM, extra fields (data) ---


_LAYOUT_FILES = {
    "ml-100k": {"u.data": U_DATA, "u.item": U_ITEM, "u.user": U_USER},
    "ml-1m": {"ratings.dat": RATINGS_DAT, "movies.dat": MOVIES_DAT, "users.dat": USERS_DAT},
    "csv": {"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV},
}
_ENCODINGS = {"ml-100k": "ISO-8859-1", "ml-1m": "ISO-8859-1", "csv": "utf-8"}


def _write_copy(folder: Path, layout: str, replaced: dict[str, bytes] | None = None) -> Path:
    folder.mkdir(parents=True)
    for name, text in _LAYOUT_FILES[layout].items():
        (folder / name).write_bytes(text.encode(_ENCODINGS[layout]))
    for name, data in (replaced or {}).items():
        (folder / name).write_bytes(data)
    return folder


def _same_ratings(left, right) -> None:
    for field in ("movie_ids", "movie_titles", "movie_genres", "user_ids", "user_index"):
        np.testing.assert_array_equal(getattr(left, field), getattr(right, field), err_msg=field)
    for field in ("movie_index", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(left, field), getattr(right, field), err_msg=field)
    assert left.user_features.keys() == right.user_features.keys()
    for key in left.user_features:
        np.testing.assert_array_equal(left.user_features[key], right.user_features[key])


@pytest.mark.parametrize(
    ("layout", "name"),
    [(layout, name) for layout, files in _LAYOUT_FILES.items() for name in files],
)
def test_a_utf8_byte_order_mark_is_stripped(tmp_path, layout, name):
    """A file re-saved by a Windows editor (UTF-8 with a BOM) once failed with
    "user id '\xef\xbb\xbf196' is not an integer" or lost its first movie or user."""
    plain = load_source(str(_write_copy(tmp_path / "plain" / layout, layout)))
    # The mark also says the text is UTF-8: u.item's "Caf\xe9" must still decode.
    with_bom = codecs.BOM_UTF8 + _LAYOUT_FILES[layout][name].encode("utf-8")
    marked = load_source(str(_write_copy(tmp_path / "bom" / layout, layout, {name: with_bom})))
    _same_ratings(marked, plain)


def test_a_byte_order_mark_in_a_zipped_ratings_file_is_stripped(tmp_path):
    with_bom = codecs.BOM_UTF8 + RATINGS_CSV.encode()
    folder = _write_copy(tmp_path / "ml", "csv", {"ratings.csv": with_bom})
    archive = tmp_path / "ml.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in folder.iterdir():
            zf.write(file, "ml/" + file.name)
    assert load_source(str(archive)).num_ratings == 3


@pytest.mark.parametrize(
    ("layout", "name", "text", "line"),
    [
        # ratings.csv once read a row with one field too many as if the extra were not there.
        ("csv", "ratings.csv", RATINGS_CSV + "2,1,4.0,964982703,9\n", 5),
        ("csv", "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703,9\n", 2),
        ("csv", "movies.csv", MOVIES_CSV + "30,Odd, The (2000),Comedy\n", 5),
        ("ml-100k", "u.data", "1\t1\t5\t881250949\t7\n" + U_DATA, 1),
        ("ml-100k", "u.data", U_DATA + "2\t1\t4\t881250953\t99\n", 5),
        ("ml-1m", "ratings.dat", RATINGS_DAT + "1::1::5::978300760::9\n", 4),
    ],
)
def test_a_line_with_too_many_fields_is_a_data_error_with_its_line(
    tmp_path, layout, name, text, line
):
    folder = _write_copy(tmp_path / layout, layout, {name: text.encode(_ENCODINGS[layout])})
    with pytest.raises(DataError) as caught:
        load_source(str(folder))
    assert caught.value.path.endswith(name)
    assert caught.value.line == line
    assert "fields" in str(caught.value)


# --- Python API strict types (recommend) ---


@pytest.fixture(scope="module")
def api_recommender(tiny_run) -> Recommender:
    return Recommender.load(tiny_run)


@pytest.mark.parametrize("rating", [True, False, "4", "4.0", None, [4], float("nan"), 5.5])
def test_ratings_must_be_real_numbers_on_the_scale(api_recommender, rating):
    """{"50": True} once counted as 1 star and {"50": "4"} as 4 stars; NaN passed the range."""
    movie = str(api_recommender.movie_ids[0])
    with pytest.raises(ValueError, match=re.escape(f"rating of {movie!r}")):
        api_recommender.recommend_for_ratings({movie: rating})


@pytest.mark.parametrize("name", ["k", "num_candidates", "min_ratings"])
@pytest.mark.parametrize("value", [float("nan"), 10.0, True, "10", None])
def test_counts_must_be_integers(api_recommender, name, value):
    """min_ratings=nan once filtered nothing, silently; k=True once meant k=1."""
    user, movie = api_recommender.user_ids[0], str(api_recommender.movie_ids[0])
    with pytest.raises(ValueError, match=f"^{name} must be"):
        api_recommender.recommend(user, **{name: value})
    with pytest.raises(ValueError, match=f"^{name} must be"):
        api_recommender.recommend_for_ratings({movie: 4}, **{name: value})
    if name == "k":
        with pytest.raises(ValueError, match="^k must be"):
            api_recommender.similar_movies(movie, k=value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "1"])
def test_rerank_weight_must_be_a_finite_number(api_recommender, value):
    with pytest.raises(ValueError, match="^rerank_weight must be"):
        api_recommender.recommend(api_recommender.user_ids[0], rerank_weight=value)


def test_one_movie_given_twice_is_an_error(api_recommender):
    """By id and by title (or as "7" and 7) the same movie once counted twice in the fold-in."""
    movie_id, title = str(api_recommender.movie_ids[0]), str(api_recommender.titles[0])
    for ratings in ({movie_id: 5, title: 3}, {movie_id: 4, title: 4}):
        with pytest.raises(ValueError, match=f"movie {re.escape(movie_id)} .*rated twice"):
            api_recommender.recommend_for_ratings(ratings)
    if movie_id.isdigit():
        with pytest.raises(ValueError, match="rated twice"):
            api_recommender.recommend_for_ratings({movie_id: 4, int(movie_id): 4})


@pytest.mark.parametrize("bad", [None, True, 3.0, b"1"])
def test_ids_must_be_strings_or_integers(api_recommender, bad):
    """recommend(None) once raised TypeError, and similar_movies(None) looked up "None"."""
    with pytest.raises(ValueError, match="must be a string or an integer"):
        api_recommender.recommend(bad)
    with pytest.raises(ValueError, match="must be a string or an integer"):
        api_recommender.recommend([api_recommender.user_ids[0], bad])
    with pytest.raises(ValueError, match="must be a string or an integer"):
        api_recommender.similar_movies(bad)
    with pytest.raises(ValueError, match="must be a string or an integer"):
        api_recommender.recommend_for_ratings({bad: 4})


def test_integer_ids_mean_their_decimal_string(api_recommender):
    user, movie = str(api_recommender.user_ids[0]), str(api_recommender.movie_ids[0])
    if not (user.isdigit() and movie.isdigit()):
        pytest.skip("the tiny run's ids are not numeric")
    assert api_recommender.recommend(int(user), k=3) == api_recommender.recommend(user, k=3)
    assert api_recommender.similar_movies(np.int64(movie), k=3) == api_recommender.similar_movies(
        movie, k=3
    )


# --- HTTP strict types and titles with "/" (serving) ---

# Every ml-100k title with a "/" (they answered 404 at /v1/movies/{title}/similar, the slash
# splitting the path) and a title two movies share, in a catalogue big enough for evaluation.
SLASH_TITLES = (
    "Face/Off (1997)",
    "Naked Gun 33 1/3: The Final Insult (1994)",
    "Victor/Victoria (1982)",
    "8 1/2 (1963)",
    "Venice/Venice (1992)",
    "JLG/JLG - autoportrait de décembre (1994)",
)
SHARED_TITLE = "Body Snatchers (1993)"


@pytest.fixture(scope="module")
def slash_titles_app(tmp_path_factory):
    """The app over a tiny run (~10 s) trained on a MovieLens CSV copy holding those titles:
    movie ids 1-6 are SLASH_TITLES, 7 and 8 share SHARED_TITLE, 9-120 are plain."""
    folder = tmp_path_factory.mktemp("slash-titles")
    titles = [*SLASH_TITLES, SHARED_TITLE, SHARED_TITLE]
    titles += [f"Movie {number} (2000)" for number in range(len(titles) + 1, 121)]
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["movieId", "title", "genres"])
        writer.writerows([row + 1, title, "Drama"] for row, title in enumerate(titles))
    rng = np.random.default_rng(0)
    with open(folder / "ratings.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        for user in range(1, 61):
            # Everyone rates movies 1-8, so that each is in the training split's vocabulary.
            movies = [*range(1, 9), *rng.choice(np.arange(9, 121), 42, replace=False)]
            for movie in movies:
                writer.writerow([user, movie, rng.integers(1, 11) / 2, 964982703])
    config = load_config(
        None,
        [
            f"data.source={folder}",
            "train.epochs=1",
            "train.batch_size=256",
            "eval.baselines=false",
            "train.tensorboard=false",
        ],
    )
    run_dir = train_and_evaluate(config, tmp_path_factory.mktemp("run") / "run").run_dir
    return create_app(Recommender.load(run_dir))


def _ask(app, method: str, path: str, **kwargs) -> httpx.Response:
    """One request to the app in process (an error inside the app raises, as a 500 would)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://faults") as client:
            return await client.request(method, path, **kwargs)

    return anyio.run(send)


@pytest.mark.parametrize("title", SLASH_TITLES)
def test_titles_with_a_slash_work_through_the_query_form(slash_titles_app, title):
    similar = _ask(slash_titles_app, "GET", "/v1/movies/similar", params={"movie": title, "k": 5})
    assert similar.status_code == 200, similar.text
    body = similar.json()
    assert body["movie"]["title"] == title and len(body["similar"]) == 5
    movie_id = body["movie"]["movie_id"]
    by_path = _ask(slash_titles_app, "GET", f"/v1/movies/{movie_id}/similar", params={"k": 5})
    assert by_path.json() == body
    rated = _ask(slash_titles_app, "POST", "/v1/recommendations", json={"ratings": {title: 4.5}})
    assert rated.status_code == 200, rated.text
    assert rated.json()["rated"] == [{"movie_id": movie_id, "title": title, "rating": 4.5}]
    found = _ask(slash_titles_app, "GET", "/v1/movies", params={"query": title})
    assert [m["title"] for m in found.json()["movies"]] == [title]


def test_a_title_two_movies_share_is_422_naming_both(slash_titles_app):
    response = _ask(slash_titles_app, "GET", "/v1/movies/similar", params={"movie": SHARED_TITLE})
    assert response.status_code == 422
    assert "ambiguous" in response.json()["detail"] and "7, 8" in response.json()["detail"]
    by_id = _ask(slash_titles_app, "GET", "/v1/movies/similar", params={"movie": "8"})
    assert by_id.status_code == 200 and by_id.json()["movie"]["title"] == SHARED_TITLE


STRICT_BODIES = [
    # (id, body, the detail); before strict types, `true` was read as 1.0 stars and "4" as 4.0.
    ("rating true", {"ratings": {"9": True}}, "ratings.9: Input should be a valid number"),
    ("rating numeric text", {"ratings": {"9": "4"}}, "ratings.9: Input should be a valid number"),
    ("rating over the scale", {"ratings": {"9": 5.5}}, "ratings.9: Input should be less than"),
    ("k true", {"ratings": {"9": 4}, "k": True}, "k: Input should be a valid integer"),
    ("k float", {"ratings": {"9": 4}, "k": 2.0}, "k: Input should be a valid integer"),
    ("min_ratings text", {"ratings": {"9": 4}, "min_ratings": "3"}, "min_ratings: Input should"),
    (
        "one movie by id and by title",
        {"ratings": {"1": 5, "Face/Off (1997)": 3}},
        "movie 1 ('Face/Off (1997)') is rated more than once",
    ),
]


@pytest.mark.parametrize(
    ("body", "detail"), [case[1:] for case in STRICT_BODIES], ids=[c[0] for c in STRICT_BODIES]
)
def test_new_user_bodies_are_strictly_typed(slash_titles_app, body, detail):
    response = _ask(slash_titles_app, "POST", "/v1/recommendations", json=body)
    assert response.status_code == 422
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    ['{"ratings": {"9": NaN}}', '{"ratings": {"9": Infinity}}', '{"ratings": {"9": 1e999}}'],
)
def test_non_finite_ratings_are_422(slash_titles_app, body):
    headers = {"Content-Type": "application/json"}
    response = _ask(slash_titles_app, "POST", "/v1/recommendations", content=body, headers=headers)
    assert response.status_code == 422
    assert "ratings.9: Input should be a finite number" in response.json()["detail"]


@pytest.mark.parametrize("name", ["k", "min_ratings"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e3", "2.5", "true"])
def test_counts_in_queries_are_finite_integers(slash_titles_app, name, value):
    response = _ask(slash_titles_app, "GET", "/v1/users/1/recommendations", params={name: value})
    assert response.status_code == 422
    assert f"query.{name}: Input should be a valid integer" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/movies/similar?movie=%00", 404),
        ("/v1/movies/similar?movie=%2F", 404),
        ("/v1/movies/similar?movie=" + "x" * 301, 422),
        ("/v1/movies/%2F/similar", 404),
        ("/v1/users/%00/recommendations", 404),
        ("/v1/users/%F0%9F%8E%AC/recommendations", 404),
        ("/v1/movies?query=%00", 200),
    ],
)
def test_odd_requests_never_get_a_500(slash_titles_app, path, status):
    response = _ask(slash_titles_app, "GET", path)
    assert response.status_code == status, response.text
    if status != 200:
        assert isinstance(response.json()["detail"], str)


# --- CLI: one error line, quiet logs, --resume with nothing to resume (cli) ---


# Lines TensorFlow, abseil and ScaNN write to stderr on their own on a machine without a GPU.
_NATIVE_LOG = re.compile(r"cuInit|absl::InitializeLog|^[IWE]\d{4} |^\d{4}-\d\d-\d\d \d\d:", re.M)


def _tfrs_movies(*argv: str) -> subprocess.CompletedProcess[str]:
    """Runs ``tfrs-movies ARGV`` in a fresh process (native logs appear only there)."""
    return subprocess.run(
        [sys.executable, "-m", "tfrs_movies.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["data", "info", "{tmp}/nowhere"], "no such file or folder"),
        # argparse once printed its usage and a second error line.
        (["recommend", "{tmp}/run", "--user", "1", "--min-ratings", "nan"], "whole number"),
        (["evaluate", "{tmp}/run"], "run"),
        # Loads TensorFlow (and once printed "failed call to cuInit" before the error).
        (["train", "--resume", "--workdir", "{tmp}/run", *TINY_OVERRIDES], "nothing to resume"),
    ],
    ids=["data", "usage", "evaluate", "resume"],
)
def test_a_failing_command_prints_exactly_one_error_line(tmp_path, argv, expected):
    result = _tfrs_movies(*(arg.format(tmp=tmp_path) for arg in argv))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr


@pytest.mark.slow
def test_train_prints_only_its_own_lines_and_scores_the_pipeline(tmp_path):
    """Every run once printed TensorFlow's cuInit error and ScaNN's partitioner lines."""
    result = _tfrs_movies("train", "--workdir", str(tmp_path / "run"), *TINY_OVERRIDES)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not _NATIVE_LOG.search(result.stdout), result.stdout
    assert "exported pipeline on" in result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["pipeline"]) >= {"retrieval_order", "reranked", "num_users"}
    evaluated = _tfrs_movies("evaluate", str(tmp_path / "run"))
    assert evaluated.returncode == 0 and evaluated.stderr == "", evaluated.stderr


_BUILD_SCANN_INDEX = """
import tfrs_movies
import tensorflow as tf
import tensorflow_recommenders as tfrs

embeddings = tf.random.stateless_normal((500, 8), seed=(0, 0))
index = tfrs.layers.factorized_top_k.ScaNN(num_leaves=20, num_leaves_to_search=5, k=3)
index.index_from_dataset(
    tf.data.Dataset.from_tensor_slices((tf.strings.as_string(tf.range(500)), embeddings)).batch(50)
)
index(embeddings[:2])
"""


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_native_log_lines_show_only_when_verbose(verbose):
    env = {**os.environ, "TFRS_MOVIES_VERBOSE": "1" if verbose else ""}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-c", _BUILD_SCANN_INDEX],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    # ScaNN logs its partitioner training through abseil whenever it builds an index.
    assert ("partitioner" in result.stderr) is verbose, result.stderr
