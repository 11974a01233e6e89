"""The Optuna study (`tfrs-movies tune`) and TensorBoard HParams logging (issue 15)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import optuna
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata as hparams_metadata

from tfrs_movies.config import load_config
from tfrs_movies.errors import ConfigError, TfrsMoviesError
from tfrs_movies.experiments import tune
from tfrs_movies.experiments.compare import BEST_RUN_DIR, compare_runs
from tfrs_movies.experiments.space import DEFAULT_SPACE, build_space, parse_dimension
from tfrs_movies.experiments.trials import OBJECTIVE

TINY = [
    "data.source=synthetic:users=150,movies=120,ratings=5000,seed=3",
    "train.epochs=2",
    "train.batch_size=256",
    "eval.baselines=false",
]


def _config(*extra: str):
    return load_config(overrides=[*TINY, *extra])


def _space():
    # A small space keeps each trial a couple of seconds; batch size is fixed by TINY.
    return build_space(
        ["model.embedding_dim=16,32"], fixed={"train.batch_size": 256, "train.epochs": 2}
    )


def read_hparams(logdir: Path) -> tuple[dict, set[str]]:
    """(hyperparameters of the session, scalar tags) read back from ``logdir``'s event files."""
    hparams, tags = {}, set()
    for path in glob.glob(str(logdir / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if value.tag == hparams_metadata.SESSION_START_INFO_TAG:
                    info = hparams_metadata.parse_session_start_info_plugin_data(plugin.content)
                    for name, hparam in info.hparams.items():
                        kind = hparam.WhichOneof("kind")
                        hparams[name] = getattr(hparam, kind)
                elif plugin.plugin_name == "scalars":
                    tags.add(value.tag)
    return hparams, tags


# --- the search space ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "low", "high", "log", "choices"),
    [
        ("train.learning_rate=log:0.001..0.02", "float", 0.001, 0.02, True, ()),
        ("model.rating_dropout=0..0.5", "float", 0.0, 0.5, False, ()),
        ("train.epochs=int:2..8", "int", 2, 8, False, ()),
        ("model.embedding_dim=32,64,128", "choice", 0, 0, False, (32, 64, 128)),
        ("model.use_genres=false,true", "choice", 0, 0, False, (False, True)),
    ],
)
def test_dimensions_parse_to_typed_ranges_and_choices(spec, kind, low, high, log, choices):
    dimension = parse_dimension(spec)
    assert (dimension.kind, dimension.low, dimension.high, dimension.log) == (kind, low, high, log)
    assert dimension.choices == choices
    assert parse_dimension(dimension.describe()) == dimension  # the README syntax round-trips


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("model.no_such_key=1,2", "unknown parameter"),
        ("train.learning_rate=0.1..0.01", "low < high"),
        ("train.learning_rate=log:0..0.1", "log range must be > 0"),
        ("model.embedding_dim=32,big", "expected an integer"),
        ("train.learning_rate", "section.key=SPEC"),
        ("model.use_genres=0..1", "is not a number"),
    ],
)
def test_bad_dimensions_are_refused_with_the_reason(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_dimension(spec)


def test_every_default_dimension_parses_and_fixed_keys_leave_the_space():
    space = build_space([], fixed={"train.learning_rate": 0.01})
    names = [d.name for d in space]
    assert len(names) == len(DEFAULT_SPACE) - 1
    assert "train.learning_rate" not in names
    assert "train.retrieval_weight" in names and "train.rating_weight" in names


# --- a whole study on small synthetic data ------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    result = tune.run_study(_config(), workdir, trials=2, space=_space(), log=lambda line: None)
    return workdir, result


def test_a_two_trial_study_finishes_and_trains_its_best_config_once(study):
    workdir, result = study
    assert result.finished_trials == 2
    stored = optuna.load_study(study_name=tune.STUDY_NAME, storage=f"sqlite:///{workdir}/study.db")
    values = [t.value for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert result.best_value == pytest.approx(max(values))
    assert 0.0 < result.best_value <= 1.0
    metrics = result.test_metrics
    assert 0.0 <= metrics["model"]["recall@10"] <= 1.0
    assert metrics["model"]["rmse"] > 0 and "pipeline" in metrics
    # The best run was trained from the best trial's settings.
    saved = json.loads((workdir / BEST_RUN_DIR / "config.json").read_text())
    assert saved["model"]["embedding_dim"] == result.best_params["model.embedding_dim"]


def test_best_config_round_trips_into_train_config(study):
    workdir, result = study
    loaded = load_config(workdir / tune.BEST_CONFIG_FILE)
    assert loaded == result.best_config
    for name, value in result.best_params.items():
        section, key = name.split(".")
        assert getattr(getattr(loaded, section), key) == pytest.approx(value)


def test_every_trial_and_the_best_run_log_hparams_and_metrics(study):
    workdir, result = study
    for number in range(2):
        hparams, tags = read_hparams(workdir / tune.TRIALS_LOGDIR / f"trial-{number:04d}")
        assert hparams["trial"] == number
        assert "model.embedding_dim" in hparams and "train.retrieval_weight" in hparams
        assert OBJECTIVE in tags
    hparams, tags = read_hparams(workdir / BEST_RUN_DIR / "tensorboard")
    assert hparams["model.embedding_dim"] == result.best_params["model.embedding_dim"]
    assert {"test/recall@10", "test/rmse", "val/recall@10"} <= tags


def test_a_finished_study_run_again_does_no_new_trial(study):
    workdir, result = study
    lines: list[str] = []
    again = tune.run_study(_config(), workdir, trials=2, space=_space(), log=lines.append)
    assert again.finished_trials == 2 and again.best_trial == result.best_trial
    assert any("up to date" in line for line in lines)


def test_a_trial_left_running_by_a_killed_process_is_run_again_not_lost(tmp_path):
    workdir = tmp_path / "study"
    tune.run_study(_config(), workdir, trials=1, space=_space(), log=lambda line: None)
    # What `kill -9` during a trial leaves: a RUNNING trial nobody will finish.
    storage = f"sqlite:///{workdir}/study.db"
    stored = optuna.load_study(study_name=tune.STUDY_NAME, storage=storage)
    dead = stored.ask({d.name: d.distribution() for d in _space()})
    dead_params = dict(dead.params)
    result = tune.run_study(_config(), workdir, trials=3, space=_space(), log=lambda line: None)
    stored = optuna.load_study(study_name=tune.STUDY_NAME, storage=storage)
    states = [t.state for t in stored.trials]
    assert result.finished_trials == 3
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the dead one, and only it
    retried = [t for t in stored.trials if t.user_attrs.get("retry_of") == dead.number]
    assert len(retried) == 1 and retried[0].params == dead_params
    assert retried[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


# --- bad input leaves any existing study untouched ------------------------------------------


def test_zero_trials_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="--trials"):
        tune.run_study(_config(), tmp_path / "s", trials=0, space=_space())
    assert not (tmp_path / "s").exists()


def test_a_study_db_that_is_not_optuna_is_refused_and_kept(tmp_path):
    (tmp_path / "study.db").write_bytes(b"not a database at all" * 100)
    before = (tmp_path / "study.db").read_bytes()
    with pytest.raises(TfrsMoviesError, match="not an Optuna study"):
        tune.run_study(_config(), tmp_path, trials=1, space=_space())
    assert (tmp_path / "study.db").read_bytes() == before


def test_a_study_made_for_other_data_is_refused_and_kept(study):
    workdir, _ = study
    before = (workdir / "study.db").read_bytes()
    other = _config("data.source=synthetic:users=150,movies=120,ratings=5000,seed=4")
    with pytest.raises(ConfigError, match="another experiment"):
        tune.run_study(other, workdir, trials=3, space=_space())
    assert (workdir / "study.db").read_bytes() == before


def test_compare_shows_a_study_by_its_best_trial(study):
    workdir, result = study
    rows = compare_runs([workdir])["runs"]
    assert [row["name"] for row in rows] == [f"{workdir.name}/best (trial {result.best_trial})"]
    assert rows[0]["recall@10"] == pytest.approx(result.test_metrics["model"]["recall@10"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trials", "0"], "--trials must be a whole number >= 1"),
        (["--trials", "2", "--space", "model.bogus=1,2"], "unknown parameter 'model.bogus'"),
        (["--trials", "2", "--timeout", "nan"], "seconds > 0"),
    ],
)
def test_bad_tune_arguments_are_one_error_line_and_exit_2(tmp_path, capsys, argv, message):
    from tfrs_movies.cli import main

    try:
        status = main(["tune", "--workdir", str(tmp_path / "s"), *TINY, *argv])
    except SystemExit as exit_:  # argparse's own type errors
        status = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "s").exists()


def test_the_base_config_is_the_first_trial(study):
    workdir, _ = study
    stored = optuna.load_study(study_name=tune.STUDY_NAME, storage=f"sqlite:///{workdir}/study.db")
    first = stored.trials[0]
    assert first.user_attrs.get("base_config") is True
    base = _config()
    # The base embedding_dim (64) is outside this test's space: that key is drawn instead.
    assert first.params["model.embedding_dim"] in (16, 32)
    assert first.params["train.retrieval_weight"] == base.train.retrieval_weight
    assert first.params["model.temperature"] == pytest.approx(base.model.temperature)
